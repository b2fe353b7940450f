package e2e

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/meshgate/meshgate/test/harness"
)

// TestHTTP3RoundRobinResumption reconnects over QUIC to the three replicas
// in turn with zero think time, one shared client session cache, one
// request per connection, and counts resumed handshakes: every connection
// after the first should resume a session another replica issued, since
// quic-go drives the same tls.Config Wrap/UnwrapSession hooks as TCP TLS.
func TestHTTP3RoundRobinResumption(t *testing.T) {
	const conns = 300
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := env.PKI.Pool()
	if err != nil {
		t.Fatal(err)
	}
	cache := tls.NewLRUClientSessionCache(1) // one session per host, like a browser
	replicas := env.Cluster.Replicas
	misses := missesByReason(t, replicas)
	resumed, crossReplica := 0, 0
	lastIssuer := -1
	for i := 0; i < conns; i++ {
		r := replicas[i%len(replicas)]
		var didResume bool
		tr := &http3.Transport{
			TLSClientConfig: &tls.Config{ServerName: harness.Host, RootCAs: pool, ClientSessionCache: cache},
			Dial: func(ctx context.Context, _ string, tlsCfg *tls.Config, cfg *quic.Config) (*quic.Conn, error) {
				c, err := quic.DialAddr(ctx, r.HTTPSAddr, tlsCfg, cfg)
				if err == nil {
					didResume = c.ConnectionState().TLS.DidResume
				}
				return c, err
			},
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, harness.URL(r.HTTPSAddr, "/h3rr"), nil)
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			tr.Close()
			t.Fatalf("connection %d to %s: %v", i, r.Name, err)
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		tr.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("connection %d to %s: status %d", i, r.Name, resp.StatusCode)
		}
		if didResume {
			resumed++
			if lastIssuer >= 0 && lastIssuer != i%len(replicas) {
				crossReplica++
			}
		}
		// The replica just connected to issued the session the next
		// connection offers (a fresh ticket comes with every connection).
		lastIssuer = i % len(replicas)
	}
	attempts := conns - 1 // the first connection has nothing to resume
	t.Logf("HTTP/3 round robin over %d replicas: %d/%d resumed (%.1f%%), %d on another replica than the issuer",
		len(replicas), resumed, attempts, 100*float64(resumed)/float64(attempts), crossReplica)
	checkResumed(t, "HTTP/3 cross-replica resumption", resumed, attempts, replicas, misses)
}
