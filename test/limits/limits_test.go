package limits

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/meshgate/meshgate/test/harness"
)

// readHeaderTimeout is meshgate's default (internal/dataplane/server), which the
// standalone command does not expose as a flag.
const readHeaderTimeout = 10 * time.Second

// TestSlowloris opens 200 connections that dribble a byte a second: half
// complete TLS and then send request headers byte by byte, half send the
// TLS ClientHello itself byte by byte. Each must be closed by meshgate
// around ReadHeaderTimeout (never served), while normal requests go on.
func TestSlowloris(t *testing.T) {
	e := setup(t)
	const n = 200
	type result struct {
		elapsed time.Duration
		err     error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() {
			start := time.Now()
			err := slowClient(e, i%2 == 0, start)
			results <- result{time.Since(start), err}
		})
	}
	// Meshgate keeps serving normal clients while every slow client holds
	// a connection.
	e.waitOpen(t, n, "slow clients connected")
	e.mustServe(t)
	wg.Wait()
	close(results)
	var maxE, minE time.Duration = 0, time.Hour
	for r := range results {
		if r.err != nil {
			t.Errorf("slow client: %v", r.err)
			continue
		}
		maxE, minE = max(maxE, r.elapsed), min(minE, r.elapsed)
	}
	t.Logf("%d slowloris connections closed after %v..%v (ReadHeaderTimeout %v)", n, minE.Round(time.Millisecond), maxE.Round(time.Millisecond), readHeaderTimeout)
	if minE < readHeaderTimeout/2 {
		t.Errorf("a slow connection was closed after %v: earlier than the header timeout, so not by it", minE)
	}
	e.mustServe(t)
}

// slowClient sends one byte a second until meshgate closes the connection,
// giving up (with an error) at 2x the header timeout.
func slowClient(e *env, afterTLS bool, start time.Time) error {
	raw, err := net.DialTimeout("tcp", e.r.HTTPSAddr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer raw.Close()
	giveUp := start.Add(2 * readHeaderTimeout)
	raw.SetDeadline(giveUp)
	var w io.Writer = raw
	var payload []byte
	var readSide io.Reader = raw
	if afterTLS {
		pool, _ := e.pki.Pool()
		tc := tls.Client(raw, &tls.Config{ServerName: harness.Host, RootCAs: pool, NextProtos: []string{"http/1.1"}})
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		w, readSide = tc, tc
		payload = []byte("GET / HTTP/1.1\r\nHost: " + harness.Host + "\r\nX-Slow: " + strings.Repeat("a", 64))
	} else {
		// A ClientHello-looking record header then filler, one byte at a time.
		payload = append([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}, make([]byte, 64)...)
	}
	closed := make(chan error, 1)
	go func() { // owned: ends when raw is closed (deferred) or at giveUp
		b := make([]byte, 512)
		for {
			n, err := readSide.Read(b)
			if n > 0 && strings.Contains(string(b[:n]), "200 OK") {
				closed <- errors.New("slow request was served")
				return
			}
			if err != nil {
				closed <- err
				return
			}
		}
	}()
	for _, c := range payload {
		if _, err := w.Write([]byte{c}); err != nil {
			return nil // closed by meshgate
		}
		select {
		case err := <-closed:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("still open after %v", time.Since(start))
			}
			if err != nil && err.Error() == "slow request was served" {
				return err
			}
			return nil
		case <-time.After(time.Second):
		}
		if time.Now().After(giveUp) {
			return fmt.Errorf("still open after %v", time.Since(start))
		}
	}
	return fmt.Errorf("payload exhausted after %v without being closed", time.Since(start))
}

// TestOversizedHeaders: a request whose headers exceed 64 KiB is answered
// 431 over HTTP/1.1 and refused over HTTP/2 (431 or GOAWAY: Go's HTTP/2
// server ends the connection with PROTOCOL_ERROR); 16 KiB of headers is
// served.
func TestOversizedHeaders(t *testing.T) {
	e := setup(t)
	cases := []struct {
		name   string
		proto  string
		size   int
		status int
	}{
		{"HTTP/1.1 16 KiB", "http/1.1", 16 << 10, http.StatusOK},
		{"HTTP/1.1 100 KiB", "http/1.1", 100 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{"HTTP/1.1 1 MiB", "http/1.1", 1 << 20, http.StatusRequestHeaderFieldsTooLarge},
		{"HTTP/2 16 KiB", "h2", 16 << 10, http.StatusOK},
		{"HTTP/2 100 KiB", "h2", 100 << 10, http.StatusRequestHeaderFieldsTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: e.tlsConfig(t, tc.proto), ForceAttemptHTTP2: tc.proto == "h2",
				MaxResponseHeaderBytes: 1 << 20,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", e.r.HTTPSAddr)
				}}
			defer tr.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+harness.Host+"/", nil)
			for i := 0; i*4096 < tc.size; i++ {
				req.Header.Set(fmt.Sprintf("X-Big-%d", i), strings.Repeat("b", min(4096, tc.size-i*4096)))
			}
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if err != nil {
				if tc.status != http.StatusOK && tc.proto == "h2" {
					t.Logf("refused: %v", err) // a stream/connection error is a refusal too
					return
				}
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			t.Logf("%s: %s %s", tc.name, resp.Proto, resp.Status)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	e.mustServe(t)
}

// keepAlive opens a TLS connection, sends one keep-alive request, reads
// the response and returns the open connection.
func keepAlive(cfg *tls.Config, addr string) (net.Conn, error) {
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, cfg)
	if _, err := fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", harness.Host); err != nil {
		raw.Close()
		return nil, fmt.Errorf("request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("response: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	raw.SetDeadline(time.Time{})
	return tc, nil
}

// TestIdleConnections holds 9,900 idle keep-alive TLS connections (under
// meshgate's default MaxConns of 10,000; fewer when RLIMIT_NOFILE's hard
// limit is lower, logged) and reports meshgate's RSS per
// connection, which must stay under 96 KiB (measured: ~48 KiB).
func TestIdleConnections(t *testing.T) {
	e := setup(t)
	n := 9900
	if lim := int(raiseNoFile(t)); lim-512 < n {
		n = lim - 512
		t.Logf("RLIMIT_NOFILE %d: holding %d connections", lim, n)
	}
	if n < 1000 {
		t.Fatalf("RLIMIT_NOFILE too low for the idle-connection test (%d connections)", n)
	}
	cfg := e.tlsConfig(t)
	e.mustServe(t)
	rss0 := rssKiB(t, e.r.Proc.PID())
	conns := make([]net.Conn, 0, n)
	var mu sync.Mutex
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var next, failed atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Go(func() {
			for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
				c, err := keepAlive(cfg, e.r.HTTPSAddr)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d connections failed; first: %v", f, n, firstErr.Load())
	}
	if len(conns) < n {
		t.Fatalf("opened only %d of %d connections within 60 s", len(conns), n)
	}
	e.waitOpen(t, len(conns), "idle connections held by meshgate")
	rss1 := rssKiB(t, e.r.Proc.PID())
	per := float64(rss1-rss0) * 1024 / float64(len(conns))
	t.Logf("IDLE: %d keep-alive TLS connections: RSS %d -> %d KiB, %.0f bytes/conn", len(conns), rss0, rss1, per)
	if per > 96<<10 {
		t.Errorf("%.0f bytes per idle connection, want < 96 KiB", per)
	}
	// Still serving with the connections held.
	for _, c := range conns[:1] {
		c.Close()
	}
	e.mustServe(t)
}

// TestManyWebSockets holds 500 WebSockets echoing through meshgate at
// once, each exchanging 10 messages, and reports meshgate's RSS per
// WebSocket, which must stay under 256 KiB (measured: ~90 KiB).
func TestManyWebSockets(t *testing.T) {
	e := setup(t)
	const n = 500
	cfg := e.tlsConfig(t)
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: -1,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", e.r.HTTPSAddr)
		}}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	e.mustServe(t)
	rss0 := rssKiB(t, e.r.Proc.PID())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var opened sync.WaitGroup
	opened.Add(n)
	release := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32) // dial concurrency
	for i := 0; i < n; i++ {
		wg.Go(func() {
			sem <- struct{}{}
			var once sync.Once
			halfway := func() { once.Do(opened.Done) }
			defer halfway()
			c, _, err := websocket.Dial(ctx, "wss://"+harness.Host+"/ws", &websocket.DialOptions{HTTPClient: hc})
			<-sem
			if err != nil {
				errs <- fmt.Errorf("dial %d: %w", i, err)
				return
			}
			defer c.CloseNow()
			for j := 0; j < 10; j++ {
				msg := fmt.Sprintf("ws %d msg %d", i, j)
				if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
				_, got, err := c.Read(ctx)
				if err != nil || !strings.Contains(string(got), msg) {
					errs <- fmt.Errorf("echo %d: %q, %v", i, got, err)
					return
				}
				if j == 4 {
					halfway()
					select { // hold half-way until every socket is open
					case <-release:
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
			}
			c.Close(websocket.StatusNormalClosure, "")
		})
	}
	opened.Wait() // every socket is half-way through its messages, or failed
	rss1 := rssKiB(t, e.r.Proc.PID())
	close(release)
	wg.Wait()
	close(errs)
	nerr := 0
	for err := range errs {
		if nerr++; nerr <= 3 {
			t.Error(err)
		}
	}
	per := float64(rss1-rss0) * 1024 / n
	t.Logf("WS: %d concurrent WebSockets (%d failed): RSS %d -> %d KiB, %.0f bytes/socket", n, nerr, rss0, rss1, per)
	if per > 256<<10 {
		t.Errorf("%.0f bytes per WebSocket, want < 256 KiB", per)
	}
	e.mustServe(t)
}
