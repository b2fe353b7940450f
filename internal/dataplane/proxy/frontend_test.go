package proxy

import (
	"net"
	"net/netip"
	"testing"

	"github.com/meshgate/meshgate/internal/dataplane/http1"
	"github.com/meshgate/meshgate/internal/routing"
)

// serveFrontend serves h behind the HTTP/1.1 engine on a loopback
// listener whose connections are tagged with frontend address fe, as
// dataplane/server tags a Gateway frontend's listeners.
func serveFrontend(t *testing.T, h *Handler, fe netip.AddrPort) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := http1.NewServer(http1.ServerConfig{Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(c, http1.ConnInfo{Frontend: fe})
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); srv.Close() })
	return "http://" + ln.Addr().String()
}

// TestFrontendRouting sends one request (same Host, same path) to the
// replica's own listener, to two Gateway frontends and to a second port
// of the first: each is routed by its own table (HTTPRouteMultipleGateways,
// and a Gateway's listeners on another port), and a frontend that the
// table no longer holds answers 404 instead of falling back to another
// table.
func TestFrontendRouting(t *testing.T) {
	own, g1, g2 := newBackend(t, "own"), newBackend(t, "g1"), newBackend(t, "g2")
	g1b := newBackend(t, "g1-8080")
	a1, a2, gone := netip.MustParseAddrPort("127.0.82.1:80"), netip.MustParseAddrPort("127.0.82.2:80"), netip.MustParseAddrPort("127.0.82.3:80")
	a1b := netip.MustParseAddrPort("127.0.82.1:8080")
	route := func(b *routing.Backend) *routing.Table {
		return table(1, vhost("same.test", gwRoute("/", nil, routing.WeightedBackend{Backend: b, Weight: 1})))
	}
	t1 := route(be("own", addrOf(own)))
	t1.Frontends = map[netip.AddrPort]*routing.Table{a1: route(be("g1", addrOf(g1))), a2: route(be("g2", addrOf(g2))), a1b: route(be("g1-8080", addrOf(g1b)))}
	var holder tables
	holder.Store(t1)
	h, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	holder.attach(h)
	t.Cleanup(h.CloseIdleConnections)
	c := noRedirect()
	for _, tc := range []struct {
		fe   netip.AddrPort
		want string
	}{{netip.AddrPort{}, "own"}, {a1, "g1"}, {a2, "g2"}, {a1b, "g1-8080"}} {
		resp, e := do(t, c, "GET", serveFrontend(t, h, tc.fe)+"/x", "same.test", nil)
		if resp.StatusCode != 200 || e == nil || e.Backend != tc.want {
			t.Errorf("frontend %v: status %d, backend %+v, want %s", tc.fe, resp.StatusCode, e, tc.want)
		}
	}
	if resp, e := do(t, c, "GET", serveFrontend(t, h, gone)+"/x", "same.test", nil); resp.StatusCode != 404 || e != nil {
		t.Errorf("removed frontend: status %d, backend %+v, want 404 from meshgate", resp.StatusCode, e)
	}
}
