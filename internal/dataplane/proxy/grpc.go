package proxy

import (
	"strconv"
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// isGRPC reports whether r is a gRPC call: HTTP/2 or HTTP/3 with a
// content-type of application/grpc, application/grpc+<codec> or
// application/grpc;<params> (the gRPC over HTTP/2 protocol). gRPC-Web
// (application/grpc-web) is not: its clients read HTTP statuses.
func isGRPC(r *exchange.Request) bool {
	if r.Proto < exchange.HTTP2 {
		return false
	}
	ct, ok := r.Header.Get("Content-Type")
	if !ok || len(ct) < len("application/grpc") || !exchange.EqualFold(ct[:len("application/grpc")], "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// gRPC status codes (google.golang.org/grpc/codes) that local replies use.
const (
	grpcInternal         = 13
	grpcUnauthenticated  = 16
	grpcPermissionDenied = 7
	grpcUnimplemented    = 12
	grpcUnavailable      = 14
	grpcUnknown          = 2
)

// grpcStatusFor maps the HTTP status of a local reply to the gRPC status
// a gRPC client gets instead, as gRPC's HTTP-to-gRPC status mapping
// (doc/http-grpc-status-mapping.md) defines it for clients that receive a
// non-gRPC response: 404 (no route) is UNIMPLEMENTED, as a server without
// the method answers; overload and upstream failures are UNAVAILABLE.
func grpcStatusFor(status int) int {
	switch status {
	case 400:
		return grpcInternal
	case 401:
		return grpcUnauthenticated
	case 403:
		return grpcPermissionDenied
	case 404:
		return grpcUnimplemented
	case 429, 502, 503, 504:
		return grpcUnavailable
	}
	return grpcUnknown
}

// grpcReply answers a gRPC call with a trailers-only response (one HEADERS
// frame with END_STREAM: :status 200, content-type, grpc-status and
// grpc-message) carrying the gRPC equivalent of the local reply status and
// msg, which is what gRPC clients decode; an HTTP error status would only
// tell them that the response was not gRPC. x.status keeps the HTTP
// status, so metrics and the access log count the exchange as the error it
// is.
func (x *exchangeState) grpcReply(status int, msg string) {
	x.out.Reset()
	x.out.Add("Content-Type", "application/grpc")
	x.out.Add("Grpc-Status", strconv.Itoa(grpcStatusFor(status)))
	x.out.Add("Grpc-Message", grpcMessage(msg))
	x.respond(200, "")
	x.status = status
}

// grpcMessage percent-encodes msg for grpc-message (every byte outside
// printable ASCII, and '%'), after dropping surrounding white space.
func grpcMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	var b strings.Builder
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
