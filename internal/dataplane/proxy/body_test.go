package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestBodyReadTimeout(t *testing.T) {
	slowAnswer := newBackendFunc(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/think" {
			time.Sleep(400 * time.Millisecond) // longer than the body timeout
		}
		_, _ = io.WriteString(w, "got "+itoa(n))
	})
	var holder tables
	holder.Store(table(1, vhost("b.example.com", prefix("/", be("b", addrOf(slowAnswer))))))
	_, fe := newProxy(t, &holder, Config{BodyReadTimeout: 200 * time.Millisecond})
	addr := strings.TrimPrefix(fe.URL, "http://")

	type step struct {
		write string
		pause time.Duration
	}
	tests := []struct {
		name       string
		steps      []step
		wantStatus int
		wantBody   string
	}{
		{"stalled body", []step{{"POST /up HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 100\r\n\r\n0123456789", 0}},
			http.StatusRequestTimeout, ""},
		{"slow but steady", func() []step {
			s := []step{{"POST /up HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 50\r\n\r\n", 0}}
			for range 5 {
				s = append(s, step{"0123456789", 100 * time.Millisecond})
			}
			return s
		}(), 200, "got 50"},
		{"upstream thinks longer than the body timeout", []step{
			{"POST /think HTTP/1.1\r\nHost: b.example.com\r\nContent-Length: 10\r\n\r\n0123456789", 0}}, 200, "got 10"},
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
				time.Sleep(s.pause)
				if _, err := io.WriteString(c, s.write); err != nil {
					t.Fatal(err)
				}
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
			if tc.wantStatus != 200 {
				return
			}
			// The keep-alive connection outlives the body timeout.
			time.Sleep(300 * time.Millisecond)
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
		})
	}
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
