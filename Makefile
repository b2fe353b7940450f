# meshgate — developer entry points. `make demo` and `make test` work on a fresh
# machine with only Go installed: they install what they need (Debian packages,
# a kube-apiserver and etcd built from Go modules) idempotently and cache it.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

BIN        ?= $(CURDIR)/bin
GO         ?= go
GOFLAGS    ?= -buildvcs=false
export GOFLAGS
# Tests run with a wall-clock bound well inside CI's 90 minutes.
TEST_TIMEOUT ?= 30m
FUZZTIME   ?= 30s

.PHONY: all build demo test unit e2e deps envtest images conformance generate bench fuzz vet fmt clean

all: build

build: ## Build meshgate and the demo echo backend into bin/.
	$(GO) build -o $(BIN)/meshgate ./cmd/meshgate
	$(GO) build -o $(BIN)/echo-backend ./test/echo

demo: deps build ## Three replicas sharing TLS sessions, on 127.0.0.1:8443-8445.
	BIN=$(BIN) hack/demo.sh

deps: ## Debian packages the demo, tests and benchmarks drive.
	hack/install-deps.sh

envtest: ## kube-apiserver, kube-controller-manager + etcd built from the Go module proxy, cached by version.
	hack/envtest-assets.sh >/dev/null

images: ## Stand-ins for the conformance suites' images (Gateway API echo-basic), cached by version.
	hack/conformance-images.sh >/dev/null

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet ./...
	cd test/chart && $(GO) vet ./...

# Package tests run in parallel under the race detector; the allocation
# guards (files built with `!race`: the detector's sync.Pool drops pooled
# buffers, so counts mean nothing under it) run once more without it. The
# process-level suites under test/ (real replicas, HAProxy, nginx, network
# namespaces) run one package at a time, so their timing bounds never
# compete with each other for the CPUs.
PKG_TESTS   = $$($(GO) list ./... | grep -v '/test/')
ALLOC_PKGS  = $$(git ls-files '*_test.go' | xargs grep -l '^//go:build !race' | xargs -n1 dirname | sort -u | sed 's|^|./|')
test: deps envtest images build vet ## Every test: unit, fuzz seeds, envtest, end to end, Ingress and Gateway API conformance, Helm chart.
	export KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" MESHGATE_IMAGES_DIR="$$(hack/conformance-images.sh)" MESHGATE_BIN=$(BIN); \
	  (cd test/chart && $(GO) test -timeout $(TEST_TIMEOUT) -count=1 ./...) && \
	  $(GO) test -race -timeout $(TEST_TIMEOUT) -count=1 $(PKG_TESTS) && \
	  $(GO) test -timeout $(TEST_TIMEOUT) -count=1 -run Allocs $(ALLOC_PKGS) && \
	  $(GO) test -p 1 -timeout $(TEST_TIMEOUT) -count=1 ./test/...

# The upstream Gateway API conformance suite and the Ingress conformance
# scenarios on the test cluster (docs/conformance/README.md); writes the
# suite's report to $(CONFORMANCE_REPORT).
CONFORMANCE_REPORT ?= $(CURDIR)/docs/conformance/gateway-api-v1.6.3-report.yaml
conformance: deps envtest images build ## Gateway API conformance (report in docs/conformance/) and Ingress conformance.
	export KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" MESHGATE_IMAGES_DIR="$$(hack/conformance-images.sh)" MESHGATE_BIN=$(BIN) \
	  MESHGATE_CONFORMANCE_REPORT=$(CONFORMANCE_REPORT); \
	  $(GO) test -p 1 -timeout 60m -count=1 -v ./test/conformance/ ./test/ingressconformance/

# The quick loop: package tests without the race detector, leaving out the
# kube source (its suites start a kube-apiserver and etcd) and every
# process-level suite under test/.
unit: ## Fast package tests only (no race detector, no envtest, no process-level suite).
	$(GO) test -count=1 $$($(GO) list ./... | grep -v -e '/test/' -e /internal/source/kube)

generate: ## Deepcopy, CRDs and RBAC with controller-gen.
	hack/generate.sh

bench: deps build ## Every benchmark side by side with nginx; writes docs/benchmarks.md.
	BIN=$(BIN) hack/bench.sh

fuzz: ## Run every fuzz target for FUZZTIME each.
	hack/fuzz.sh $(FUZZTIME)

clean:
	rm -rf $(BIN) _out
