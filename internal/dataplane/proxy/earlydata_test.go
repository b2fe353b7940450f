package proxy

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

// TestEarlyDataAndMisdirected drives the pipeline through the net/http
// adapter (the HTTP/3 and HTTP/2 front ends' path) with the connection
// state quic-go gives a request read in 0-RTT (HandshakeComplete false):
// a request for a host whose policy allows 0-RTT reaches the backend with
// "Early-Data: 1" (RFC 8470 §5.1, finding 4 of issue 15: before, nothing
// told the backend); one for a host whose policy forbids it is answered
// 425, decided by the routed host, not the SNI; and a request whose Host
// is under another policy than the SNI's gets 421 (finding 3).
func TestEarlyDataAndMisdirected(t *testing.T) {
	b := newBackend(t, "b")
	var tb tables
	tbl := table(1, vhost("early.example", prefix("/", be("b", addrOf(b)))),
		vhost("late.example", prefix("/", be("b", addrOf(b)))),
		vhost("strict.example", prefix("/", be("b", addrOf(b)))))
	early := routing.DefaultPolicy()
	early.Name, early.Allow0RTT = "default/early", true
	strict := routing.DefaultPolicy()
	strict.Name, strict.MinVersion = "default/strict", tls.VersionTLS13
	cert := &tls.Certificate{Certificate: [][]byte{{1}}}
	tbl.TLS.Exact = map[string]*routing.TLSHost{
		"early.example":  {Name: "early.example", Certificate: cert, Policy: early},
		"late.example":   {Name: "late.example", Certificate: cert, Policy: routing.DefaultPolicy()},
		"strict.example": {Name: "strict.example", Certificate: cert, Policy: strict},
	}
	h, _ := newProxy(t, &tb, Config{})
	tb.Store(tbl)

	serve := func(sni, host string, complete bool) (int, http.Header) {
		r := httptest.NewRequest(http.MethodGet, "https://"+host+"/", nil)
		r.TLS = &tls.ConnectionState{ServerName: sni, HandshakeComplete: complete, Version: tls.VersionTLS13}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var e echo
		if w.Code == 200 {
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil {
				t.Fatalf("%s: %v", host, err)
			}
		}
		return w.Code, e.Header
	}
	if code, hdr := serve("early.example", "early.example", false); code != 200 || hdr.Get("Early-Data") != "1" {
		t.Errorf("0-RTT request for a 0-RTT host: %d, Early-Data %q; want 200 and 1", code, hdr.Get("Early-Data"))
	}
	if code, hdr := serve("early.example", "early.example", true); code != 200 || hdr.Get("Early-Data") != "" {
		t.Errorf("1-RTT request: %d, Early-Data %q; want 200 and none", code, hdr.Get("Early-Data"))
	}
	if code, _ := serve("late.example", "late.example", false); code != http.StatusTooEarly {
		t.Errorf("0-RTT request for a host without 0-RTT: %d, want 425", code)
	}
	if code, _ := serve("early.example", "late.example", true); code != http.StatusMisdirectedRequest {
		t.Errorf("SNI early, Host late: %d, want 421", code)
	}
	if code, _ := serve("late.example", "strict.example:443", true); code != http.StatusMisdirectedRequest {
		t.Errorf("SNI late, Host strict: %d, want 421", code)
	}
	if code, _ := serve("", "late.example", true); code != http.StatusMisdirectedRequest {
		t.Errorf("no SNI (no default certificate), Host late: %d, want 421", code)
	}
	if code, _ := serve("LATE.example", "late.example", true); code != 200 {
		t.Errorf("SNI in other case: %d, want 200", code)
	}
}
