package harness

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// connTimeout bounds one client connection (dial, handshake, request).
const connTimeout = 5 * time.Second

// Client makes TLS connections the way a browser reconnecting to a load
// balancer does: each connection sends one HTTP/1.1 request for
// Config.ServerName (Host when empty) and
// reads the whole response (which also makes a TLS 1.3 client read the
// server's NewSessionTicket), then closes.
type Client struct {
	// Config is shared by every connection this client makes, so its
	// ClientSessionCache (one entry per server name) decides what is offered
	// for resumption. Required.
	Config *tls.Config
	// Source, when set, is the local IP connections come from.
	Source string
	// Path requested; "" means "/".
	Path string
}

// Do makes one connection to addr and reports whether it resumed a session.
func (c *Client) Do(ctx context.Context, addr string) (resumed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, connTimeout)
	defer cancel()
	d := &net.Dialer{}
	if c.Source != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.Source)}
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer raw.Close()
	dl, _ := ctx.Deadline()
	_ = raw.SetDeadline(dl)
	conn := tls.Client(raw, c.Config)
	if err := conn.HandshakeContext(ctx); err != nil {
		return false, fmt.Errorf("handshake via %s: %w", addr, err)
	}
	resumed = conn.ConnectionState().DidResume
	path := c.Path
	if path == "" {
		path = "/"
	}
	host := c.Config.ServerName
	if host == "" {
		host = Host
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return resumed, fmt.Errorf("write request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return resumed, fmt.Errorf("read response: %w", err)
	}
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if err != nil {
		return resumed, fmt.Errorf("read body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return resumed, fmt.Errorf("status %d via %s", resp.StatusCode, addr)
	}
	return resumed, nil
}

// Stats counts reconnects and how many of them resumed.
type Stats struct {
	Conns    int // successful connections counted
	Resumed  int
	Errors   int
	FirstErr error
	Elapsed  time.Duration
}

// Rate is the resumed fraction of counted connections, in percent.
func (s Stats) Rate() float64 {
	if s.Conns == 0 {
		return 0
	}
	return 100 * float64(s.Resumed) / float64(s.Conns)
}

// PerSecond is counted connections per second of wall time.
func (s Stats) PerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Conns) / s.Elapsed.Seconds()
}

func (s Stats) String() string {
	out := fmt.Sprintf("%d/%d resumed (%.1f%%)", s.Resumed, s.Conns, s.Rate())
	if s.Errors > 0 {
		out += fmt.Sprintf(", %d errors (first: %v)", s.Errors, s.FirstErr)
	}
	return out
}

// Add accumulates o into s (Elapsed too).
func (s *Stats) Add(o Stats) {
	s.Conns += o.Conns
	s.Resumed += o.Resumed
	s.Errors += o.Errors
	s.Elapsed += o.Elapsed
	if s.FirstErr == nil {
		s.FirstErr = o.FirstErr
	}
}

// Reconnect makes one priming connection (a full handshake, not counted)
// and then n reconnects to addr with zero think time, counting resumptions.
// It stops early when ctx ends or after maxErrors failed connections.
func (c *Client) Reconnect(ctx context.Context, addr string, n, maxErrors int) Stats {
	var s Stats
	if _, err := c.Do(ctx, addr); err != nil {
		s.Errors, s.FirstErr = 1, fmt.Errorf("priming connection: %w", err)
		return s
	}
	start := time.Now()
	s = c.reconnects(ctx, addr, func(i int, _ time.Time) bool { return i < n }, maxErrors)
	s.Elapsed = time.Since(start)
	return s
}

// reconnects connects to addr while more(connections made, now) holds,
// counting connections and resumptions, and stops after maxErrors
// failures or when ctx ends. Elapsed is left zero.
func (c *Client) reconnects(ctx context.Context, addr string, more func(int, time.Time) bool, maxErrors int) Stats {
	var s Stats
	for i := 0; more(i, time.Now()) && ctx.Err() == nil && s.Errors <= maxErrors; i++ {
		resumed, err := c.Do(ctx, addr)
		if err != nil {
			s.Errors++
			if s.FirstErr == nil {
				s.FirstErr = err
			}
			continue
		}
		s.Conns++
		if resumed {
			s.Resumed++
		}
	}
	return s
}

// Load runs workers clients concurrently, each with its own session cache
// (so each keeps one session per host, like independent browsers; none
// when base has no ClientSessionCache), each making perWorker reconnects to addr after a priming
// connection. primed, when not nil, runs after the priming connections and
// before the measured part (e.g. to sample server CPU). It returns the
// summed stats; Elapsed is the wall time of the measured part.
func Load(ctx context.Context, base *tls.Config, addr string, workers, perWorker int, primed func()) Stats {
	more := func(i int, _ time.Time) bool { return i < perWorker }
	return load(ctx, base, addr, workers, primed, more, perWorker/10+5)
}

// LoadFor is Load for a wall time instead of a count: every worker
// reconnects until d has passed since the measured part began (the
// connection under way then completes and counts), so that a CPU profile
// of the servers over the same d covers the measured connections. A worker
// gives up after 50 failed connections.
func LoadFor(ctx context.Context, base *tls.Config, addr string, workers int, d time.Duration, primed func()) Stats {
	var end time.Time
	more := func(_ int, now time.Time) bool { return now.Before(end) } // end is set before the workers start
	return load(ctx, base, addr, workers, func() {
		if primed != nil {
			primed()
		}
		end = time.Now().Add(d)
	}, more, 50)
}

// load primes workers clients, calls primed, then runs them concurrently
// while more(connections made by this worker, now) holds, each worker
// stopping after maxErrors failures.
func load(ctx context.Context, base *tls.Config, addr string, workers int, primed func(), more func(int, time.Time) bool, maxErrors int) Stats {
	clients := make([]*Client, workers)
	for i := range clients {
		cfg := base.Clone()
		if base.ClientSessionCache != nil {
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		clients[i] = &Client{Config: cfg}
	}
	var total Stats
	for _, c := range clients { // prime sequentially, outside the timing
		if _, err := c.Do(ctx, addr); err != nil {
			total.Errors++
			total.FirstErr = fmt.Errorf("priming: %w", err)
		}
	}
	if primed != nil {
		primed()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			s := c.reconnects(ctx, addr, more, maxErrors) // Elapsed zero: the total's is the wall time of all workers
			mu.Lock()
			total.Add(s)
			mu.Unlock()
		})
	}
	wg.Wait()
	total.Elapsed = time.Since(start)
	return total
}
