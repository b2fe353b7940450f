package tls12

import (
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// writeCounter counts the writes made to the connection it wraps.
type writeCounter struct {
	net.Conn
	writes atomic.Int32
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestCloseAfterPeerReset: a peer that reset the connection (as openssl
// s_time does after each handshake) gets no close_notify, whose write
// could only fail with EPIPE and raise SIGPIPE; a peer that closed cleanly
// still gets one (RFC 5246 section 7.2.1).
func TestCloseAfterPeerReset(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reset      bool
		wantWrites int32 // by Close
	}{{"reset", true, 0}, {"clean close", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			type outcome struct {
				readErr error
				writes  int32
				err     error
			}
			done := make(chan outcome, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					done <- outcome{err: err}
					return
				}
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				wc := &writeCounter{Conn: c}
				sc := Server(wc, &Config{Certificate: sharedCert(t, "ecdsa"), Sessions: newMemCache()})
				if err := sc.Handshake(); err != nil {
					done <- outcome{err: err}
					c.Close()
					return
				}
				_, readErr := sc.Read(make([]byte, 16))
				before := wc.writes.Load()
				sc.Close()
				done <- outcome{readErr: readErr, writes: wc.writes.Load() - before}
			}()
			cl := dialTest(t, ln.Addr().String())
			if err := cl.handshake(); err != nil {
				t.Fatal(err)
			}
			if tc.reset {
				_ = cl.conn.(*net.TCPConn).SetLinger(0) // Close sends RST
			}
			cl.conn.Close()
			o := <-done
			if o.err != nil {
				t.Fatal(o.err)
			}
			if o.readErr == nil {
				t.Fatal("Read after the peer closed returned no error")
			}
			if o.writes != tc.wantWrites {
				t.Errorf("Close made %d writes (read error %v), want %d", o.writes, o.readErr, tc.wantWrites)
			}
		})
	}
}
