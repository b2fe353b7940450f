package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBodyReadTimeout(t *testing.T) {
	// /think holds its answer until the test releases it: the backend
	// then "thinks" for as long as the test needs, after the whole body
	// arrived.
	thinking := make(chan struct{}, 1) // the backend has read all of /think's body
	release := make(chan struct{})     // the test lets /think answer
	slowAnswer := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/think" {
			select {
			case thinking <- struct{}{}:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
				http.Error(w, "the test never released /think", http.StatusInternalServerError)
				return
			}
		}
		_, _ = io.WriteString(w, "got "+itoa(n))
	})
	var holder tables
	holder.Store(table(1, vhost("b.example.com", prefix("/", be("b", addrOf(slowAnswer))))))
	const bodyTimeout = 200 * time.Millisecond
	h, err := New(Config{BodyReadTimeout: bodyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := &readsListener{Listener: inner, conns: make(chan *readsConn, 8)}
	fe := serveProxy(t, &holder, h, ln)
	addr := strings.TrimPrefix(fe.URL, "http://")
	// The witness front end serves the same Handler (same body timeout)
	// on its own listener, so that its connections stay out of ln.conns.
	witnessLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	witnessAddr := strings.TrimPrefix(serveProxy(t, &holder, h, witnessLn).URL, "http://")

	// outlastBodyTimeout waits until the backend holds /think's whole body,
	// then sends a request whose body stalls and waits for the proxy to
	// answer it 408. The proxy started reading that body after /think's
	// body had been read in full and sent upstream, and answers 408 only
	// once a read waited bodyTimeout: /think has then been waiting for its
	// upstream answer longer than the body timeout, inside the same
	// proxy. Only then may /think answer.
	outlastBodyTimeout := func(t *testing.T) {
		select {
		case <-thinking:
		case <-time.After(10 * time.Second):
			t.Fatal("the backend never received the whole /think body")
		}
		wc, err := net.Dial("tcp", witnessAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer wc.Close()
		_ = wc.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(wc, "POST /witness HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(wc), nil)
		if err != nil {
			t.Fatalf("witness with a stalled body: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("witness with a stalled body: got %d, want %d", resp.StatusCode, http.StatusRequestTimeout)
		}
		close(release)
	}

	type step struct {
		write string
		pause time.Duration
	}
	tests := []struct {
		name       string
		steps      []step
		wantStatus int
		wantBody   string
		before     func(t *testing.T) // runs after the writes, before the response is read
	}{
		{"stalled body", []step{{"POST /up HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 100\r\n\r\n0123456789", 0}},
			http.StatusRequestTimeout, "", nil},
		{"slow but steady", func() []step {
			s := []step{{"POST /up HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 50\r\n\r\n", 0}}
			for range 5 {
				s = append(s, step{"0123456789", 100 * time.Millisecond})
			}
			return s
		}(), 200, "got 50", nil},
		{"upstream thinks longer than the body timeout", []step{
			{"POST /think HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 10\r\n\r\n0123456789", 0}}, 200, "got 10",
			outlastBodyTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			for _, s := range tc.steps {
				// Pacing, not proof of absence: the pauses spread the slow
				// body over more than the body timeout (5 x 100 ms) with
				// each gap under it (100 ms of slack), and the case asserts
				// the answer it reads, not that nothing happened meanwhile.
				time.Sleep(s.pause)
				if _, err := io.WriteString(c, s.write); err != nil {
					t.Fatal(err)
				}
			}
			if tc.before != nil {
				tc.before(t)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, body, tc.wantStatus, tc.wantBody)
			}
			sc := <-ln.conns // the server's side of c
			if tc.wantStatus != 200 {
				return
			}
			// The keep-alive connection outlives the body timeout: the
			// server waits for the next request under its idle deadline,
			// not the body's. Every read of the first request has
			// returned (its response is here), so the first read that
			// returns bytes after this point is the one that gets the
			// second request; its deadline, taken when it was called,
			// must not be a body deadline (at most bodyTimeout ahead).
			// Asserting the deadline in force replaces waiting out the
			// timeout to see that it did not fire.
			mark := sc.count()
			if _, err := io.WriteString(c, "GET /again HTTP/1.1\r\nHost: b.example.com\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("second request on the connection: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("second request: %d", resp.StatusCode)
			}
			r, ok := sc.firstDataAfter(mark)
			if !ok {
				t.Fatal("no server read returned the second request")
			}
			if !r.deadline.IsZero() && r.deadline.Sub(r.called) <= bodyTimeout {
				t.Fatalf("the server read the next request under a deadline %v ahead (body timeout %v): the body deadline was left on the connection",
					r.deadline.Sub(r.called), bodyTimeout)
			}
		})
	}
}

// readsListener hands the test each accepted connection, wrapped so that
// it records every read with the deadline in force when it was called.
type readsListener struct {
	net.Listener
	conns chan *readsConn
}

func (l *readsListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	rc := &readsConn{Conn: c}
	l.conns <- rc
	return rc, nil
}

// readRecord is one Read on a server connection.
type readRecord struct {
	called   time.Time // when Read was called
	deadline time.Time // the read deadline in force then (zero: none)
	n        int
}

// readsConn records the reads made on it and the read deadlines set.
type readsConn struct {
	net.Conn
	mu       sync.Mutex
	deadline time.Time
	reads    []readRecord
}

func (c *readsConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

func (c *readsConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *readsConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	r := readRecord{called: time.Now(), deadline: c.deadline}
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	r.n = n
	c.mu.Lock()
	c.reads = append(c.reads, r)
	c.mu.Unlock()
	return n, err
}

// count is the number of reads that have returned.
func (c *readsConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.reads)
}

// firstDataAfter returns the first read after the first i that returned
// bytes.
func (c *readsConn) firstDataAfter(i int) (readRecord, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.reads[i:] {
		if r.n > 0 {
			return r, true
		}
	}
	return readRecord{}, false
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}
