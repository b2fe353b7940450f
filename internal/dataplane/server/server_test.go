package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/go-logr/logr/funcr"
	"github.com/pires/go-proxyproto"

	"github.com/meshgate/meshgate/internal/dataplane/proxy"
	"github.com/meshgate/meshgate/internal/dataplane/tlsconfig"
	"github.com/meshgate/meshgate/internal/routing"
	"github.com/meshgate/meshgate/internal/testkit"
)

// proxyHeader returns a PROXY header of version v carrying src.
func proxyHeader(t testing.TB, v byte, src, dst string) []byte {
	t.Helper()
	s, _ := net.ResolveTCPAddr("tcp", src)
	d, _ := net.ResolveTCPAddr("tcp", dst)
	b, err := proxyproto.HeaderProxyFromAddrs(v, s, d).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawGET sends header (may be nil) then a plain HTTP/1.1 GET on a fresh
// connection to addr; optionally wraps it in TLS. It returns the response
// or an error when the server refused the connection.
func rawGET(t testing.TB, addr string, header []byte, tlsCfg *tls.Config, host string) (*http.Response, error) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if header != nil {
		if _, err := c.Write(header); err != nil {
			return nil, err
		}
	}
	if tlsCfg != nil {
		tc := tls.Client(c, tlsCfg)
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		c = tc
	}
	if _, err := io.WriteString(c, "GET /pp HTTP/1.1\r\nHost: "+host+"\r\nConnection: close\r\n\r\n"); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, nil
}

func TestProxyProtocol(t *testing.T) {
	var xff atomic.Value
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	const (
		served   = iota // 200 with wantXFF
		refused         // closed by the PROXY stage, counted
		unparsed        // the header reached TLS / HTTP as bytes: never 200
	)
	tests := []struct {
		name     string
		required bool
		trusted  []netip.Prefix
		version  byte // 0: no header
		want     int
		wantXFF  string
	}{
		{"v2 required trusted", true, loopback, 2, served, "203.0.113.9"},
		{"v1 required trusted", true, loopback, 1, served, "203.0.113.9"},
		{"required without header", true, loopback, 0, refused, ""},
		{"required untrusted source", true, elsewhere, 2, refused, ""},
		// Off, the header is never parsed, even from a source that would
		// be trusted: loopback is where sidecars and port-forwards come from.
		{"off, trusted-looking source sending header", false, loopback, 2, unparsed, ""},
		{"off, v1 header", false, loopback, 1, unparsed, ""},
		{"off without header", false, loopback, 0, served, "127.0.0.1"},
		{"off, no trusted proxies, without header", false, nil, 0, served, "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.ProxyProtocol, c.TrustedProxies = tc.required, tc.trusted })
			f.setBackend(func(w http.ResponseWriter, r *http.Request) {
				xff.Store(r.Header.Get("X-Forwarded-For"))
			})
			for _, listener := range []string{"http", "https"} {
				addr, cfg := f.httpAddr(), (*tls.Config)(nil)
				if listener == "https" {
					addr, cfg = f.httpsAddr(), &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool}
				}
				var hdr []byte
				if tc.version != 0 {
					hdr = proxyHeader(t, tc.version, "203.0.113.9:40000", addr)
				}
				xff.Store("")
				resp, err := rawGET(t, addr, hdr, cfg, "a.example.com")
				switch tc.want {
				case refused:
					if err == nil {
						t.Fatalf("%s: connection served (status %d), want refused", listener, resp.StatusCode)
					}
				case unparsed:
					if err == nil && resp.StatusCode == 200 {
						t.Fatalf("%s: served with X-Forwarded-For %q: the PROXY header was parsed", listener, xff.Load())
					}
					if got := xff.Load(); got != "" {
						t.Fatalf("%s: backend reached with X-Forwarded-For %q", listener, got)
					}
				default:
					if err != nil {
						t.Fatalf("%s: %v", listener, err)
					}
					if got := xff.Load(); resp.StatusCode != 200 || got != tc.wantXFF {
						t.Fatalf("%s: status %d X-Forwarded-For %q, want 200 %q", listener, resp.StatusCode, got, tc.wantXFF)
					}
				}
			}
			wantRejected := 0.0
			if tc.want == refused {
				wantRejected = 2
			}
			if n, _ := testkit.MetricSum(t, f.reg, "meshgate_listener_connections_rejected_total",
				map[string]string{"reason": "proxy_protocol"}); n != wantRejected {
				t.Fatalf("rejected metric %v, want %v", n, wantRejected)
			}
		})
	}
}

// TestProxyProtocolNeedsTrustedProxies: the protocol on with nobody
// trusted would refuse every connection; New says so instead.
func TestProxyProtocolNeedsTrustedProxies(t *testing.T) {
	_, err := New(Config{Handler: newHandler(t), ProxyProtocol: true})
	if err == nil || !strings.Contains(err.Error(), "TrustedProxies") {
		t.Fatalf("New(ProxyProtocol without TrustedProxies) = %v, want an error naming TrustedProxies", err)
	}
}

func TestHTTPListener(t *testing.T) {
	f := newFixture(t, nil)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest("GET", "http://"+f.httpAddr()+"/p?q=1", nil)
	req.Host = "secure.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://secure.example.com/p?q=1" // the fixture's proxy has no HTTPSPort
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Fatalf("got %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	// The same host over TLS is proxied.
	if status, e, _ := get(t, f.client(t, true), "https://secure.example.com/p"); status != 200 || e == nil {
		t.Fatalf("TLS request: status %d", status)
	}
	// Plain HTTP never negotiates HTTP/2 (no h2c).
	status, e, proto := get(t, http.DefaultClient, "http://"+f.httpAddr()+"/plain")
	if status != 200 || e == nil || proto != "HTTP/1.1" || e.Hdr.Get("X-Forwarded-Proto") != "http" {
		t.Fatalf("plain: %d %s %v", status, proto, e)
	}
}

func TestMaxConns(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxConns = 2 })
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", f.httpAddr())
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, "2 open connections", func() bool {
		n, _ := testkit.MetricSum(t, f.reg, "meshgate_listener_connections_open", nil)
		return n == 2
	})
	if _, err := rawGET(t, f.httpAddr(), nil, nil, "x"); err == nil {
		t.Fatal("third connection served beyond MaxConns")
	}
	for _, c := range held {
		c.Close()
	}
	waitFor(t, "slots released", func() bool {
		n, _ := testkit.MetricSum(t, f.reg, "meshgate_listener_connections_open", nil)
		return n == 0
	})
	if resp, err := rawGET(t, f.httpAddr(), nil, nil, "x"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("after release: %v", err)
	}
}

// drainBackend echoes WebSocket messages on /ws, holds /slow until release
// (closing inFlight when it arrives) and answers "done".
func drainBackend(inFlight, release chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(context.Background())
				if err != nil {
					return
				}
				_ = c.Write(context.Background(), typ, msg)
			}
		}
		if r.URL.Path == "/slow" {
			close(inFlight)
			<-release
		}
		_, _ = io.WriteString(w, "done")
	}
}

func TestGracefulDrain(t *testing.T) {
	release, inFlight := make(chan struct{}), make(chan struct{})
	f := newFixture(t, nil)
	f.setBackend(drainBackend(inFlight, release))
	client := f.client(t, false)

	// An open WebSocket (hijacked connection) and a slow request in flight.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss://a.example.com/ws", &websocket.DialOptions{HTTPClient: client})
	if err != nil {
		t.Fatalf("websocket through the server: %v", err)
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := client.Get("https://a.example.com/slow")
		if err != nil {
			slow <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	select {
	case <-inFlight:
	case <-ctx.Done():
		t.Fatal("slow request never reached the backend")
	}

	shut := make(chan error, 1)
	go func() { shut <- f.srv.Shutdown(ctx) }()

	// New connections are refused once Shutdown began.
	waitFor(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", f.httpsAddr(), time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with requests in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The WebSocket keeps working during the drain.
	if err := ws.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "still here" {
		t.Fatalf("websocket during drain: %q %v", msg, err)
	}
	close(release)
	if got := <-slow; got != "done" {
		t.Fatalf("in-flight request: %s", got)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a WebSocket was open", err)
	case <-time.After(100 * time.Millisecond):
	}
	ws.Close(websocket.StatusNormalClosure, "")
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the WebSocket closed")
	}
	if err := f.srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if err := f.srv.Start(context.Background()); err == nil {
		t.Fatal("Start after Shutdown succeeded")
	}
}

func TestShutdownDeadline(t *testing.T) {
	f := newFixture(t, nil)
	inFlight := make(chan struct{})
	f.setBackend(func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-r.Context().Done()
	})
	errc := make(chan error, 1)
	go func() {
		_, err := f.client(t, true).Get("https://a.example.com/hang")
		errc <- err
	}()
	select {
	case <-inFlight:
	case <-time.After(5 * time.Second):
		t.Fatal("request never reached the backend")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := f.srv.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v after its deadline", d)
	}
	if err := <-errc; err == nil {
		t.Fatal("hanging request succeeded after forced close")
	}
	if n, _ := testkit.MetricSum(t, f.reg, "meshgate_listener_connections_open", nil); n != 0 {
		t.Fatalf("%v connections open after forced close", n)
	}
}

func TestShutdownBeforeStart(t *testing.T) {
	s, err := New(Config{HTTPAddr: "127.0.0.1:0", Handler: newHandler(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Handler succeeded")
	}
}

// TestCurlHTTP2 drives the real curl binary against the TLS listener.
func TestCurlHTTP2(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not installed (apt-get install -y curl): %v", err)
	}
	// curl is a trusted forwarder here, so its X-Forwarded-For is kept.
	f := newFixtureWith(t, fixtureOpts{proxy: proxy.Config{TrustedForwarders: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}, nil)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, f.ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(f.httpsAddr())
	tests := []struct {
		host      string
		wantProto string
	}{
		{"a.example.com", "2"},
		{"x.wild.example.com", "2"},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			url := "https://" + tc.host + ":" + port + "/curl/path"
			out, err := exec.CommandContext(ctx, curl, "-sS", "--http2", "--cacert", caFile,
				"--resolve", tc.host+":"+port+":127.0.0.1", "-H", "X-Forwarded-For: 198.51.100.4",
				"-w", "\n%{http_code} %{http_version}", url).CombinedOutput()
			if err != nil {
				t.Fatalf("curl: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			last := lines[len(lines)-1]
			if last != "200 "+tc.wantProto {
				t.Fatalf("curl status/version %q, want %q\n%s", last, "200 "+tc.wantProto, out)
			}
			body := strings.Join(lines[:len(lines)-1], "\n")
			for _, want := range []string{`"path":"/curl/path"`, `"X-Forwarded-For":["198.51.100.4, 127.0.0.1"]`,
				`"X-Forwarded-Proto":["https"]`, `"host":"` + tc.host + ":" + port + `"`} {
				if !strings.Contains(body, want) {
					t.Fatalf("backend echo lacks %s:\n%s", want, body)
				}
			}
		})
	}
}

func TestAccessLogClientFromProxyProtocol(t *testing.T) {
	lines := make(chan string, 100)
	logger := funcr.New(func(prefix, args string) {
		select {
		case lines <- args:
		default:
		}
	}, funcr.Options{Verbosity: 1})
	f := newFixtureWith(t, fixtureOpts{proxy: proxy.Config{Log: logger}}, func(c *Config) {
		c.ProxyProtocol = true
		c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		c.Log = logger
	})
	hdr := proxyHeader(t, 2, "198.51.100.77:5000", f.httpsAddr())
	resp, err := rawGET(t, f.httpsAddr(), hdr, &tls.Config{ServerName: "a.example.com", RootCAs: f.ca.pool}, "a.example.com")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("request: %v", err)
	}
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l := <-lines:
			if strings.Contains(l, `"msg"="access"`) || strings.Contains(l, `"access"`) {
				if !strings.Contains(l, `"client"="198.51.100.77"`) || !strings.Contains(l, `"status"=200`) {
					t.Fatalf("access log line lacks PROXY client or status: %s", l)
				}
				return
			}
		case <-deadline:
			t.Fatal("no access log line")
		}
	}
}

func TestReady(t *testing.T) {
	s, err := New(Config{HTTPAddr: "127.0.0.1:0", Handler: newHandler(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name    string
		do      func()
		wantErr string
	}{
		{"before start", func() {}, "not started"},
		{"no table", func() {
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}, "no routing table"},
		{"ready", func() { s.Apply(tlsconfig.Build(&routing.Table{}, newSessions(t, nil))) }, ""},
		{"shutting down", func() { _ = s.Shutdown(ctx) }, "shutting down"},
	}
	for _, st := range steps {
		st.do()
		err := s.Ready(ctx)
		if (st.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), st.wantErr)) {
			t.Fatalf("%s: Ready() = %v, want %q", st.name, err, st.wantErr)
		}
	}
}

// TestBodyTooLargeReachesClient checks that a 413 answered before the body
// was read reaches the client instead of a connection reset.
func TestBodyTooLargeReachesClient(t *testing.T) {
	f := newFixture(t, nil)
	tbl := f.newTable(2)
	small := *tbl.HTTP.CatchAll.Routes[0].Backend
	small.MaxBodyBytes = 1000
	tbl.HTTP.CatchAll = &routing.VirtualHost{Routes: []routing.Route{{PathType: routing.PathPrefix, Path: "/", Backend: &small}}}
	f.store(tbl)
	for _, listener := range []string{"http", "https"} {
		t.Run(listener, func(t *testing.T) {
			url := "http://" + f.httpAddr() + "/upload"
			c := http.DefaultClient
			if listener == "https" {
				url, c = "https://a.example.com/upload", f.client(t, false)
			}
			body := strings.NewReader(strings.Repeat("x", 8<<20))
			resp, err := c.Post(url, "application/octet-stream", body)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", resp.StatusCode)
			}
		})
	}
}

// TestBodyReadTimeoutHTTP2 checks the proxy's body idle timeout on an
// HTTP/2 stream (a stream deadline, not the connection's).
func TestBodyReadTimeoutHTTP2(t *testing.T) {
	f := newFixtureWith(t, fixtureOpts{proxy: proxy.Config{BodyReadTimeout: 200 * time.Millisecond}}, nil)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("0123456789")) }() // then stall
	req, _ := http.NewRequest("POST", "https://a.example.com/upload", pr)
	req.ContentLength = 100
	c := f.client(t, true)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || resp.Proto != "HTTP/2.0" {
		t.Fatalf("got %d %s, want 408 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	// The connection still serves other streams.
	if status, _, proto := get(t, c, "https://a.example.com/after"); status != 200 || proto != "HTTP/2.0" {
		t.Fatalf("next stream: %d %s", status, proto)
	}
}

// TestHTTP2TrailersAndBodies: over HTTP/2 a request body reaches the
// backend and the backend's trailers reach the client (what gRPC needs),
// through the h2 engine and the proxy's HTTP/1.1 upstream path.
func TestHTTP2TrailersAndBodies(t *testing.T) {
	f := newFixture(t, nil)
	f.setBackend(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "Grpc-Status")
		w.Header().Set("X-Te", r.Header.Get("Te"))
		_, _ = w.Write(b)
		w.(http.Flusher).Flush()
		w.Header().Set("Grpc-Status", "0")
	})
	c := f.client(t, true)
	req, _ := http.NewRequest("POST", "https://a.example.com/svc/Method", strings.NewReader(strings.Repeat("g", 100000)))
	req.Header.Set("Te", "trailers")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Proto != "HTTP/2.0" || len(b) != 100000 {
		t.Fatalf("%s: %d body bytes", resp.Proto, len(b))
	}
	if resp.Trailer.Get("Grpc-Status") != "0" || resp.Header.Get("X-Te") != "trailers" {
		t.Fatalf("trailer %v, header %v", resp.Trailer, resp.Header)
	}
}
