package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/meshgate/meshgate/test/harness"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestHTTP3 sends HTTP/3 requests to each replica's UDP twin of its HTTPS
// port (no balancer: HAProxy's TCP mode does not carry QUIC) and, with one
// shared session cache, checks that a QUIC session from replica 1 resumes
// on replicas 2 and 3 too.
func TestHTTP3(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := env.PKI.Pool()
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(4)
	for i, r := range env.Cluster.Replicas {
		t.Run(r.Name, func(t *testing.T) {
			var resumed bool
			tr := &http3.Transport{
				TLSClientConfig: &tls.Config{ServerName: harness.Host, RootCAs: pool, ClientSessionCache: cache},
				Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
					c, err := quic.DialAddr(ctx, r.HTTPSAddr, tlsCfg, cfg)
					if err == nil {
						resumed = c.ConnectionState().TLS.DidResume
					}
					return c, err
				},
			}
			defer tr.Close()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, harness.URL(r.HTTPSAddr, "/h3"), nil)
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatalf("HTTP/3 request to %s: %v", r.HTTPSAddr, err)
			}
			body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			_ = resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || resp.ProtoMajor != 3 {
				t.Fatalf("HTTP/3: status %d proto %s err %v", resp.StatusCode, resp.Proto, err)
			}
			var e echoReply
			if err := json.Unmarshal(body, &e); err != nil || e.Path != "/h3" {
				t.Fatalf("echo body %q: %v", body, err)
			}
			if i > 0 && !resumed {
				t.Errorf("QUIC connection to %s did not resume the session of an earlier replica", r.Name)
			}
		})
	}
}
