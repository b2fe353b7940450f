package tls12

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
)

// testCert makes a self-signed certificate for "example.test" and
// "*.example.test" with a key of the given kind.
func testCert(t testing.TB, kind string) *tls.Certificate {
	t.Helper()
	var key crypto.Signer
	var err error
	switch kind {
	case "rsa":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ecdsa":
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "ed25519":
		_, key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return testkit.NewCert(t, testkit.Spec{Names: []string{"example.test", "*.example.test"}, Key: key}).TLS
}

var (
	certOnce  sync.Once
	certCache map[string]*tls.Certificate
)

// sharedCert returns one certificate per kind for the whole test binary
// (RSA key generation is slow).
func sharedCert(t testing.TB, kind string) *tls.Certificate {
	certOnce.Do(func() {
		certCache = map[string]*tls.Certificate{}
		for _, k := range []string{"rsa", "ecdsa", "ed25519"} {
			certCache[k] = testCert(t, k)
		}
	})
	return certCache[kind]
}

// memCache is a SessionCache for tests: sessions keyed by id and server
// name, with revocation and a hook to count calls.
type memCache struct {
	mu      sync.Mutex
	m       map[string][]byte
	revoked map[string]bool
	puts    int
	gets    int
	noIssue bool
}

func newMemCache() *memCache { return &memCache{m: map[string][]byte{}, revoked: map[string]bool{}} }

func (c *memCache) NewSessionID(string) []byte {
	if c.noIssue {
		return nil
	}
	id := make([]byte, 32)
	rand.Read(id)
	return id
}

func (c *memCache) Put(id []byte, sni string, state []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.puts++
	c.m[sni+"\x00"+string(id)] = state
}

func (c *memCache) Get(id []byte, sni string, _ net.Addr) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gets++
	if c.revoked[string(id)] {
		return nil
	}
	return c.m[sni+"\x00"+string(id)]
}

func (c *memCache) revoke(id []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.revoked[string(id)] = true
}

func (c *memCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// serve starts a listener that runs the TLS 1.2 server with cfg on every
// connection and echoes what it reads. Results of each server handshake
// are sent on the returned channel.
type serverResult struct {
	state tls.ConnectionState
	err   error
	conn  *Conn
}

func serve(t testing.TB, cfg *Config) (string, <-chan serverResult) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	results := make(chan serverResult, 64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				sc := Server(c, cfg)
				err := sc.Handshake()
				select {
				case results <- serverResult{sc.ConnectionState(), err, sc}:
				default:
				}
				if err != nil {
					return
				}
				buf := make([]byte, 64<<10)
				for {
					n, err := sc.Read(buf)
					if n > 0 {
						if _, werr := sc.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						sc.Close()
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), results
}

func result(t testing.TB, ch <-chan serverResult) serverResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(20 * time.Second):
		t.Fatal("no server handshake result")
	}
	return serverResult{}
}
