package http1

import (
	"bufio"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// holdConn is a server-side connection that records HoldUntilClose and
// what is written after it.
type holdConn struct {
	net.Conn
	mu       sync.Mutex
	holds    int
	afterCut strings.Builder // bytes written once held
}

func (c *holdConn) HoldUntilClose() {
	c.mu.Lock()
	c.holds++
	c.mu.Unlock()
}

func (c *holdConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.holds > 0 {
		c.afterCut.Write(p)
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// TestHoldLastResponse checks when the server asks its transport to hold
// output until the close (ConnInfo.Hold): exactly for the last response of
// a connection that closes after it, never for a response that more
// requests or an unread body follow, so nothing a client waits for is held.
func TestHoldLastResponse(t *testing.T) {
	s, err := NewServer(ServerConfig{Handler: handlerFunc(echoHandler), ReadHeaderTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name string
		// steps are written one after the other, each once the answers
		// to the one before it have been read (answers responses each).
		steps   []string
		answers []int
		holds   int
		held    string // the held output starts with this
	}{
		{name: "keep-alive then client close", steps: []string{"GET /a HTTP/1.1\r\nHost: h\r\n\r\n"}, answers: []int{1}},
		{name: "Connection: close", steps: []string{"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"}, answers: []int{1},
			holds: 1, held: "HTTP/1.1 200"},
		{name: "HTTP/1.0", steps: []string{"GET /a HTTP/1.0\r\nHost: h\r\n\r\n"}, answers: []int{1}, holds: 1, held: "HTTP/1.1 200"},
		{name: "keep-alive, then close", steps: []string{"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"}, answers: []int{1, 1}, holds: 1, held: "HTTP/1.1 200"},
		{name: "close with the body unread", steps: []string{"GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 10\r\n\r\nab"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			_ = client.SetDeadline(time.Now().Add(10 * time.Second))
			raw, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			hc := &holdConn{Conn: raw}
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.ServeConn(hc, ConnInfo{Hold: hc})
			}()
			br := bufio.NewReader(client)
			for i, step := range tc.steps {
				send(t, client, step)
				if tc.answers == nil {
					break
				}
				for range tc.answers[i] {
					readResp(t, br, "GET")
				}
			}
			if tc.holds == 0 {
				_ = client.(*net.TCPConn).CloseWrite()
			}
			_, _ = io.Copy(io.Discard, br)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("ServeConn did not return")
			}
			hc.mu.Lock()
			defer hc.mu.Unlock()
			if hc.holds != tc.holds || !strings.HasPrefix(hc.afterCut.String(), tc.held) {
				t.Fatalf("HoldUntilClose called %d times, want %d; output after it %q, want it to start with %q",
					hc.holds, tc.holds, hc.afterCut.String(), tc.held)
			}
		})
	}
}
