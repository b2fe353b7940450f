package proxy

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/h2"
	"github.com/meshgate/meshgate/internal/testkit"
)

// newH2CProxy serves h behind meshgate's HTTP/2 engine with prior
// knowledge (h2c), as the plain listener serves gRPC, and returns its
// address.
func newH2CProxy(t *testing.T, h *Handler) string {
	t.Helper()
	srv, err := h2.NewServer(h2.Config{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, h2.ConnInfo{RemoteAddr: netip.MustParseAddrPort(c.RemoteAddr().String())})
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
		srv.Close()
		h.CloseIdleConnections()
	})
	return ln.Addr().String()
}

// TestGRPCLocalReplies: a gRPC call that meshgate answers itself (no route,
// no endpoints) gets a trailers-only response whose grpc-status a real gRPC
// client decodes (UNIMPLEMENTED for no route, as the Gateway API
// conformance suite's GRPCRoute tests require, UNAVAILABLE for no
// endpoints); metrics still count the HTTP status. Plain HTTP requests keep
// their HTTP statuses.
func TestGRPCLocalReplies(t *testing.T) {
	var holder tables
	empty := be("empty")
	holder.Store(table(1, vhost("g.example.com", prefix("/svc.Empty/", empty))))
	reg := prometheus.NewRegistry()
	h, err := New(Config{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	holder.attach(h)
	addr := newH2CProxy(t, h)

	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority("g.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, tc := range []struct {
		method string
		want   codes.Code
	}{
		{"/svc.Missing/Call", codes.Unimplemented},
		{"/svc.Empty/Call", codes.Unavailable},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cc.Invoke(ctx, tc.method, &emptypb.Empty{}, &emptypb.Empty{})
		cancel()
		st, ok := status.FromError(err)
		if !ok || st.Code() != tc.want {
			t.Errorf("%s: got %v, want code %v", tc.method, err, tc.want)
		}
	}
	if n, _ := testkit.MetricSum(t, reg, "meshgate_http_requests_total", map[string]string{"backend": "none", "code": "4xx"}); n != 1 {
		t.Errorf("no-route gRPC calls counted as 4xx: %v, want 1", n)
	}

	// Not gRPC: an HTTP/2 request of another content type, and gRPC-Web.
	c := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	for _, ct := range []string{"text/plain", "application/grpc-web"} {
		req, _ := http.NewRequest("POST", "http://"+addr+"/svc.Missing/Call", nil)
		req.Host = "g.example.com"
		req.Header.Set("Content-Type", ct)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 || resp.Header.Get("Grpc-Status") != "" {
			t.Errorf("%s: got %d grpc-status %q, want a plain 404", ct, resp.StatusCode, resp.Header.Get("Grpc-Status"))
		}
	}
}

func h2cOnly() *http.Protocols {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &p
}

func TestIsGRPC(t *testing.T) {
	for _, tc := range []struct {
		proto exchange.Proto
		ct    string
		want  bool
	}{
		{exchange.HTTP2, "application/grpc", true},
		{exchange.HTTP3, "application/grpc+proto", true},
		{exchange.HTTP2, "Application/GRPC;charset=utf-8", true},
		{exchange.HTTP2, "application/grpc-web", false},
		{exchange.HTTP2, "application/grpcx", false},
		{exchange.HTTP2, "application/json", false},
		{exchange.HTTP2, "", false},
		{exchange.HTTP11, "application/grpc", false},
	} {
		r := &exchange.Request{Proto: tc.proto}
		if tc.ct != "" {
			r.Header.Add("Content-Type", tc.ct)
		}
		if got := isGRPC(r); got != tc.want {
			t.Errorf("isGRPC(%v, %q) = %v, want %v", tc.proto, tc.ct, got, tc.want)
		}
	}
}

func TestGRPCMessage(t *testing.T) {
	if got, want := grpcMessage("no route\n"), "no route"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := grpcMessage("100% \xff"), "100%25 %FF"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if grpcStatusFor(404) != int(codes.Unimplemented) || grpcStatusFor(503) != int(codes.Unavailable) ||
		grpcStatusFor(500) != int(codes.Unknown) || grpcStatusFor(400) != int(codes.Internal) ||
		grpcStatusFor(401) != int(codes.Unauthenticated) || grpcStatusFor(403) != int(codes.PermissionDenied) {
		t.Error("grpcStatusFor disagrees with the gRPC codes")
	}
}
