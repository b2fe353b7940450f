package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

func TestUpstreamProtocols(t *testing.T) {
	protoEcho := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Proto+" "+r.Header.Get("X-Forwarded-Host"))
	})
	plain := httptest.NewServer(protoEcho)
	defer plain.Close()

	h2c := httptest.NewUnstartedServer(protoEcho)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	h2c.Config.Protocols = &p
	h2c.Start()
	defer h2c.Close()

	tlsBackend := httptest.NewUnstartedServer(protoEcho)
	tlsBackend.EnableHTTP2 = true
	tlsBackend.StartTLS()
	defer tlsBackend.Close()

	tests := []struct {
		name  string
		proto routing.Protocol
		srv   *httptest.Server
		want  string
	}{
		{"http", "", plain, "HTTP/1.1 p.example.com"},
		{"h2c", routing.ProtocolH2C, h2c, "HTTP/2.0 p.example.com"},
		{"grpc is h2c", routing.ProtocolGRPC, h2c, "HTTP/2.0 p.example.com"},
		{"https self-signed with h2", routing.ProtocolHTTPS, tlsBackend, "HTTP/2.0 p.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := be("proto", addrOf(tc.srv))
			b.Protocol = tc.proto
			var holder tables
			holder.Store(table(1, vhost("p.example.com", prefix("/", b))))
			_, fe := newProxy(t, &holder, Config{})
			for range 3 { // pooled connections are reused across requests
				req, _ := http.NewRequest("GET", fe.URL+"/", nil)
				req.Host = "p.example.com"
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != tc.want {
					t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tc.want)
				}
			}
		})
	}
}

// TestUnderscoreFieldsDropped: a field named X_Real_IP reaches CGI/WSGI
// backends as HTTP_X_REAL_IP, the same variable as meshgate's X-Real-Ip;
// by default it is dropped on both upstream paths (HTTP/1.1 pool and
// net/http transport), and kept only with UnderscoresInHeaders.
func TestUnderscoreFieldsDropped(t *testing.T) {
	fields := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, k := range []string{"X_real_ip", "X-Real-Ip", "Accept_language", "Accept"} {
			_, _ = io.WriteString(w, k+"="+strings.Join(r.Header[k], ",")+";")
		}
	})
	plain := httptest.NewServer(fields)
	defer plain.Close()
	h2c := httptest.NewUnstartedServer(fields)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	h2c.Config.Protocols = &p
	h2c.Start()
	defer h2c.Close()

	const dropped = "X_real_ip=;X-Real-Ip=127.0.0.1;Accept_language=;Accept=*/*;"
	const kept = "X_real_ip=6.6.6.6;X-Real-Ip=127.0.0.1;Accept_language=en;Accept=*/*;"
	for _, tc := range []struct {
		name  string
		proto routing.Protocol
		srv   *httptest.Server
		allow bool
		want  string
	}{
		{"http1 pool", "", plain, false, dropped},
		{"transport (h2c)", routing.ProtocolH2C, h2c, false, dropped},
		{"http1 pool, allowed", "", plain, true, kept},
		{"transport, allowed", routing.ProtocolH2C, h2c, true, kept},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := be("fields", addrOf(tc.srv))
			b.Protocol = tc.proto
			var holder tables
			holder.Store(table(1, vhost("p.example.com", prefix("/", b))))
			_, fe := newProxy(t, &holder, Config{UnderscoresInHeaders: tc.allow})
			req, _ := http.NewRequest("GET", fe.URL+"/", nil)
			req.Host = "p.example.com"
			req.Header["X_real_ip"] = []string{"6.6.6.6"}
			req.Header["Accept_language"] = []string{"en"}
			req.Header["Accept"] = []string{"*/*"}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != tc.want {
				t.Fatalf("got %d %q, want 200 %q", resp.StatusCode, body, tc.want)
			}
		})
	}
}
