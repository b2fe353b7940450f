# syntax=docker/dockerfile:1
# meshgate container image: a static Go binary on distroless/static, run as
# the distroless "nonroot" user (65532). Not needed by `make test`.
#
#   docker build -t ghcr.io/meshgate/meshgate:0.1.0 --build-arg VERSION=0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 ...   (cross-compiles; no emulation)
#
# The chart runs it read-only, without capabilities, on ports > 1024.

ARG GO_VERSION=1.26.8

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
# Modules first, so source edits do not invalidate the download layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" -o /out/meshgate ./cmd/meshgate

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="meshgate" \
      org.opencontainers.image.description="Kubernetes ingress controller whose replicas share TLS sessions" \
      org.opencontainers.image.source="https://github.com/meshgate/meshgate" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/meshgate /usr/local/bin/meshgate
USER 65532:65532
# https, http, metrics/health, session mesh
EXPOSE 8443/tcp 8443/udp 8080/tcp 9101/tcp 7946/tcp
ENTRYPOINT ["/usr/local/bin/meshgate"]
CMD ["run"]
