package http3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	qhttp3 "github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/sessionmesh"
	"github.com/meshgate/meshgate/internal/testkit"
)

func selfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	return *testkit.SelfSigned(t, names...)
}

// sessionMesh is the unit-test stand-in for the session mesh: stateful
// tickets in a map shared by every config it produces.
type sessionMesh struct {
	mu      sync.Mutex
	m       map[string][]byte
	unwraps atomic.Int64 // successful lookups
}

// ConfigureTLS implements tlsconfig.Sessions: stateful tickets in the
// shared map.
func (s *sessionMesh) ConfigureTLS(cfg *tls.Config, _ sessionmesh.Host) {
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		b, err := ss.Bytes()
		if err != nil {
			return nil, err
		}
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		s.mu.Lock()
		s.m[hex.EncodeToString(id)] = b
		s.mu.Unlock()
		return id, nil
	}
	cfg.UnwrapSession = func(id []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		s.mu.Lock()
		b := s.m[hex.EncodeToString(id)]
		s.mu.Unlock()
		if b == nil {
			return nil, nil
		}
		s.unwraps.Add(1)
		return tls.ParseSessionState(b)
	}
}

// hostPolicy says whether h.example and another host (other.example)
// allow 0-RTT.
type hostPolicy struct{ h, other bool }

// configs builds the data plane's per-host configurations of a table
// serving cert for h.example and other.example, with sessions from s.
func (s *sessionMesh) configs(cert tls.Certificate, p hostPolicy) *tlsconfig.Set {
	pol := func(allow bool) *routing.TLSPolicy {
		pp := routing.DefaultPolicy()
		pp.Allow0RTT = allow
		return pp
	}
	t := &routing.Table{TLS: routing.TLSHosts{Exact: map[string]*routing.TLSHost{
		"h.example":     {Name: "h.example", Certificate: &cert, Policy: pol(p.h)},
		"other.example": {Name: "other.example", Certificate: &cert, Policy: pol(p.other)},
	}}}
	return tlsconfig.Build(t, s)
}

type testServer struct {
	*Server
	url    string
	reg    *prometheus.Registry
	events chan string // "method early=bool used0rtt=bool"
}

func startServer(t testing.TB, set *tlsconfig.Set) *testServer {
	t.Helper()
	ts := &testServer{reg: prometheus.NewRegistry(), events: make(chan string, 16)}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case ts.events <- r.Method + " " + string(body):
		default:
		}
		_, _ = io.WriteString(w, "hello "+r.Proto)
	})
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: h, Registerer: ts.reg})
	if err != nil {
		t.Fatal(err)
	}
	s.Apply(set)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	ts.Server, ts.url = s, "https://"+s.Addr().String()+"/"
	return ts
}

func clientTLS(cert tls.Certificate, cache tls.ClientSessionCache) *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)
	return &tls.Config{RootCAs: roots, ServerName: "h.example", ClientSessionCache: cache}
}

func get(t testing.TB, tr *qhttp3.Transport, method, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// waitTicket polls the client cache until the server's ticket arrived.
func waitTicket(t testing.TB, cache tls.ClientSessionCache) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "a session ticket", func() bool { _, ok := cache.Get("h.example"); return ok })
}

func TestServeAndConfigs(t *testing.T) {
	cert := selfSigned(t, "h.example")
	mesh := &sessionMesh{m: map[string][]byte{}}
	ts := startServer(t, mesh.configs(cert, hostPolicy{}))
	// The QUIC variants were derived at Apply, one per host; handshakes
	// only look them up.
	st := ts.tls.Load()
	if n := st.set.Len(); n != 2 {
		t.Fatalf("derived per-host configs = %d, want 2", n)
	}
	hello := &tls.ClientHelloInfo{ServerName: "h.example"}
	c1, err := ts.getConfigForClient(hello)
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := ts.getConfigForClient(hello); c2 != c1 || c1.NextProtos[0] != qhttp3.NextProtoH3 || c1.MinVersion != tls.VersionTLS13 {
		t.Fatalf("per-host config not the derived one: %p vs %p, ALPN %v", c1, c2, c1.NextProtos)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = ts.getConfigForClient(hello) }); allocs != 0 {
		t.Fatalf("getConfigForClient allocates %v times per handshake", allocs)
	}
	for range 3 {
		tr := &qhttp3.Transport{TLSClientConfig: clientTLS(cert, nil)}
		resp := get(t, tr, http.MethodGet, ts.url)
		tr.Close()
		if resp.StatusCode != 200 || resp.Proto != "HTTP/3.0" || resp.TLS.NegotiatedProtocol != "h3" {
			t.Fatalf("status %d proto %s alpn %q", resp.StatusCode, resp.Proto, resp.TLS.NegotiatedProtocol)
		}
	}
}

// TestResumptionAcrossServers: a session issued by server A resumes on
// server B because both use WrapSession/UnwrapSession on one shared store.
func TestResumptionAcrossServers(t *testing.T) {
	cert := selfSigned(t, "h.example")
	mesh := &sessionMesh{m: map[string][]byte{}}
	a := startServer(t, mesh.configs(cert, hostPolicy{}))
	b := startServer(t, mesh.configs(cert, hostPolicy{}))
	cache := tls.NewLRUClientSessionCache(8)

	trA := &qhttp3.Transport{TLSClientConfig: clientTLS(cert, cache)}
	if resp := get(t, trA, http.MethodGet, a.url); resp.TLS.DidResume {
		t.Fatal("first connection resumed")
	}
	waitTicket(t, cache)
	trA.Close()

	trB := &qhttp3.Transport{TLSClientConfig: clientTLS(cert, cache)}
	defer trB.Close()
	resp := get(t, trB, http.MethodGet, b.url)
	if !resp.TLS.DidResume {
		t.Fatal("connection to server B did not resume the session from server A")
	}
	if n := mesh.unwraps.Load(); n != 1 {
		t.Fatalf("UnwrapSession hits = %d, want 1", n)
	}
}

// gatedConn is a client's UDP socket whose reads wait until open is
// closed. quic-go's client handles the server's handshake on its own
// goroutine, writing the peer's transport parameters, while a stream
// opened for 0-RTT reads them (quic-go/quic-go#4303, open in v0.65.0): the
// race detector reports it whenever the two overlap. Holding the server's
// packets until the early streams are opened and written orders them:
// close(open) happens before the reader takes the first packet.
type gatedConn struct {
	net.PacketConn
	open chan struct{}
}

func (g *gatedConn) ReadFrom(p []byte) (int, net.Addr, error) {
	<-g.open
	return g.PacketConn.ReadFrom(p)
}

// SetReadBuffer and SetWriteBuffer pass quic-go's socket sizing through.
func (g *gatedConn) SetReadBuffer(n int) error  { return g.PacketConn.(*net.UDPConn).SetReadBuffer(n) }
func (g *gatedConn) SetWriteBuffer(n int) error { return g.PacketConn.(*net.UDPConn).SetWriteBuffer(n) }

// earlyConn is a 0-RTT resumption whose server packets are held (see
// gatedConn) until release is called.
type earlyConn struct {
	*quic.Conn
	release func()
}

// dialEarly resumes with 0-RTT and returns the connection; with hold, its
// server packets are held until release (called by the test's cleanup at
// the latest). Hold only when the session allows 0-RTT: otherwise the dial
// itself waits for the handshake.
func dialEarly(t testing.TB, url string, tlsConf *tls.Config, hold bool) earlyConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gatedConn{PacketConn: udp, open: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(g.open) }) }
	if !hold {
		release()
	}
	tr := &quic.Transport{Conn: g}
	t.Cleanup(func() { release(); tr.Close(); udp.Close() })
	addr, err := net.ResolveUDPAddr("udp", strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/"))
	if err != nil {
		t.Fatal(err)
	}
	c := tlsConf.Clone()
	c.NextProtos = []string{qhttp3.NextProtoH3}
	conn, err := tr.DialEarly(ctx, addr, c, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return earlyConn{Conn: conn, release: release}
}

// earlyRequest is a request written on its own stream in 0-RTT.
type earlyRequest struct{ str *quic.Stream }

// sendEarly writes a bodiless request (one HTTP/3 HEADERS frame, RFC 9114
// §4.1, QPACK without the dynamic table) on a fresh bidirectional stream of
// conn and closes the stream's sending side, all before the handshake
// completes: the client has no control stream, which RFC 9114 §6.2.1 lets
// a server tolerate until it needs the client's settings.
func sendEarly(t testing.TB, conn earlyConn, method, url string) earlyRequest {
	t.Helper()
	str, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", method}, {":scheme", "https"}, {":authority", "h.example"}, {":path", "/"}} {
		if err := enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	frame := quicvarint.Append(nil, 0x01) // HEADERS
	frame = quicvarint.Append(frame, uint64(block.Len()))
	frame = append(frame, block.Bytes()...)
	if _, err := str.Write(frame); err != nil {
		t.Fatal(err)
	}
	if err := str.Close(); err != nil {
		t.Fatal(err)
	}
	return earlyRequest{str}
}

// status reads the response's HEADERS frame and returns its :status; the
// rest of the response is discarded.
func (r earlyRequest) status(t testing.TB) int {
	t.Helper()
	r.str.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(r.str)
	for {
		typ, err := quicvarint.Read(br)
		if err != nil {
			t.Fatalf("response frame: %v", err)
		}
		n, err := quicvarint.Read(br)
		if err != nil || n > 1<<16 {
			t.Fatalf("response frame length %d: %v", n, err)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatalf("response frame: %v", err)
		}
		if typ != 0x01 { // not HEADERS (a GREASE or unknown frame): skip
			continue
		}
		next := qpack.NewDecoder().Decode(payload)
		for {
			f, err := next()
			if err != nil {
				t.Fatalf("response headers without :status: %v", err)
			}
			if f.Name == ":status" {
				code, err := strconv.Atoi(f.Value)
				if err != nil {
					t.Fatalf(":status %q", f.Value)
				}
				_, _ = io.Copy(io.Discard, br)
				return code
			}
		}
	}
}

func Test0RTTPolicy(t *testing.T) {
	cert := selfSigned(t, "h.example")
	cases := []struct {
		name      string
		policy    hostPolicy
		want0RTT  bool
		wantPOST  []int // acceptable statuses for a POST sent in early data
		wantRefus float64
	}{
		{"policy allows", hostPolicy{h: true}, true, []int{http.StatusTooEarly, http.StatusOK}, 0},
		// Another host allows 0-RTT, so tickets invite it; this host's
		// resumption refuses the early data.
		{"policy forbids host", hostPolicy{other: true}, false, []int{http.StatusOK}, 1},
		// No host allows 0-RTT: tickets do not invite it, nothing to refuse.
		{"no host allows", hostPolicy{}, false, []int{http.StatusOK}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mesh := &sessionMesh{m: map[string][]byte{}}
			ts := startServer(t, mesh.configs(cert, tc.policy))
			cache := tls.NewLRUClientSessionCache(8)
			tr := &qhttp3.Transport{TLSClientConfig: clientTLS(cert, cache)}
			get(t, tr, http.MethodGet, ts.url)
			waitTicket(t, cache)
			tr.Close()

			conn := dialEarly(t, ts.url, clientTLS(cert, cache), tc.want0RTT)
			if tc.want0RTT {
				// Written before the server's first packet is read, so in 0-RTT.
				postReq := sendEarly(t, conn, http.MethodPost, ts.url)
				getReq := sendEarly(t, conn, http.MethodGet, ts.url)
				conn.release()
				post, get := postReq.status(t), getReq.status(t)
				if get != http.StatusOK {
					t.Fatalf("GET status %d", get)
				}
				ok := false
				for _, s := range tc.wantPOST {
					ok = ok || post == s
				}
				if !ok {
					t.Fatalf("POST status %d, want one of %v", post, tc.wantPOST)
				}
				if post == http.StatusTooEarly {
					t.Log("POST in 0-RTT answered 425")
				}
			}
			conn.release()
			<-conn.HandshakeComplete()
			if used := conn.ConnectionState().Used0RTT; used != tc.want0RTT {
				t.Fatalf("Used0RTT = %v, want %v", used, tc.want0RTT)
			}
			if got, _ := testkit.MetricSum(t, ts.reg, "meshgate_http3_0rtt_refused_total", nil); got != tc.wantRefus {
				t.Fatalf("0rtt_refused = %v, want %v", got, tc.wantRefus)
			}
		})
	}
}

type fakeConn struct{ done chan struct{} }

func (f fakeConn) HandshakeComplete() <-chan struct{} { return f.done }

func TestEarlyDataGuard(t *testing.T) {
	pending, complete := fakeConn{make(chan struct{})}, fakeConn{make(chan struct{})}
	close(complete.done)
	cases := []struct {
		name   string
		method string
		conn   any
		header string
		want   int
	}{
		{"early POST", http.MethodPost, pending, "", http.StatusTooEarly},
		{"early PUT", http.MethodPut, pending, "", http.StatusTooEarly},
		{"early GET", http.MethodGet, pending, "", http.StatusOK},
		{"early HEAD", http.MethodHead, pending, "", http.StatusOK},
		{"early OPTIONS", http.MethodOptions, pending, "", http.StatusOK},
		{"POST after handshake", http.MethodPost, complete, "", http.StatusOK},
		{"POST marked Early-Data by a proxy", http.MethodPost, complete, "1", http.StatusTooEarly},
		{"POST without conn", http.MethodPost, nil, "", http.StatusOK},
	}
	tooEarly := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
	h := earlyDataGuard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), tooEarly)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/", nil)
			if tc.conn != nil {
				r = r.WithContext(context.WithValue(r.Context(), connKey{}, tc.conn))
			}
			if tc.header != "" {
				r.Header.Set("Early-Data", tc.header)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
}

func TestAltSvc(t *testing.T) {
	h := AltSvc(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), 8443)
	cases := []struct {
		name string
		tls  bool
		want string
	}{
		{"tls", true, `h3=":8443"; ma=86400`},
		{"plain", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if got := w.Header().Get("Alt-Svc"); got != tc.want {
				t.Fatalf("Alt-Svc %q, want %q", got, tc.want)
			}
		})
	}
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.TLS = &tls.ConnectionState{}
	AltSvc(http.NotFoundHandler(), 0).ServeHTTP(w, r)
	if got := w.Header().Get("Alt-Svc"); got != "" {
		t.Fatalf("port 0 set Alt-Svc %q", got)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
}

func TestStartContextCancelCloses(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	addr := s.Addr().String()
	cancel()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		t.Fatal("serve goroutine still running after ctx cancel")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after cancel: %v", err)
	}
	// The UDP port is released.
	s2, _ := New(Config{Addr: addr, Handler: http.NotFoundHandler()})
	if err := s2.Start(context.Background()); err != nil {
		t.Fatalf("rebind %s: %v", addr, err)
	}
	_ = s2.Shutdown(context.Background())
}

func TestShutdownWaitsForInflight(t *testing.T) {
	cert := selfSigned(t, "h.example")
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	})
	s, err := New(Config{Addr: "127.0.0.1:0", Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	s.Apply((&sessionMesh{m: map[string][]byte{}}).configs(cert, hostPolicy{}))
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr := &qhttp3.Transport{TLSClientConfig: clientTLS(cert, nil)}
	defer tr.Close()
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, "https://"+s.Addr().String()+"/", nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// Release the handler only once Shutdown is under way, which the
	// server shows by refusing new connections (it stopped accepting).
	probe := clientTLS(cert, nil)
	probe.NextProtos = []string{qhttp3.NextProtoH3}
	testkit.WaitFor(t, 10*time.Second, "Shutdown refusing new connections", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := quic.DialAddr(ctx, s.Addr().String(), probe, &quic.Config{HandshakeIdleTimeout: time.Second})
		if err != nil {
			return true
		}
		_ = c.CloseWithError(0, "probe")
		return false
	})
	close(release)
	if r := <-res; r.err != nil || r.body != "done" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
