package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Reply is the JSON document the echo backend answers every HTTP request
// with (Content-Type application/json). Field names are part of the test
// contract: test/e2e and hack/demo.sh read them.
type Reply struct {
	// Backend identifies the process that answered.
	Backend BackendInfo `json:"backend"`
	// Method, Path (URL path, unescaped), Query (raw query string), Host
	// (the Host header / :authority) and Proto ("HTTP/1.1", "HTTP/2.0")
	// describe the request as received.
	Method string `json:"method"`
	Path   string `json:"path"`
	Query  string `json:"query,omitempty"`
	Host   string `json:"host"`
	Proto  string `json:"proto"`
	// RemoteAddr is the peer of the TCP connection (the proxy, when the
	// request went through one).
	RemoteAddr string `json:"remote_addr"`
	// Headers holds every request header in canonical form.
	Headers map[string][]string `json:"headers"`
}

// BackendInfo names the echo backend process.
type BackendInfo struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// handler answers /healthz with "ok", upgrades /ws to a WebSocket echo and
// answers everything else with a Reply. It is safe for concurrent use.
//
// A request with the query parameter set-session=NAME is treated the way a
// servlet container treats its JSESSIONID: unless it carries a cookie NAME
// that this process issued, the reply sets a new one (a random value,
// Path=/, HttpOnly). Sticky-learn tests use it; which cookie the request
// carried is in Headers.
type handler struct {
	info     BackendInfo
	mu       sync.Mutex
	sessions map[string]bool // values issued, at most maxSessions
}

// maxSessions bounds the sessions an echo backend remembers; past it the
// oldest are forgotten all at once (their clients get new ones).
const maxSessions = 100_000

func newHandler(info BackendInfo) http.Handler {
	h := &handler{info: info, sessions: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/ws", h.serveWebSocket)
	mux.HandleFunc("/", h.serveEcho)
	return mux
}

// session sets a new session cookie on w unless r carries one this
// process issued (see handler).
func (h *handler) session(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("set-session")
	if name == "" {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, err := r.Cookie(name); err == nil && h.sessions[c.Value] {
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	v := hex.EncodeToString(b[:])
	if len(h.sessions) >= maxSessions {
		clear(h.sessions)
	}
	h.sessions[v] = true
	http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/", HttpOnly: true})
}

func (h *handler) serveEcho(w http.ResponseWriter, r *http.Request) {
	h.session(w, r)
	reply := Reply{
		Backend:    h.info,
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Host:       r.Host,
		Proto:      r.Proto,
		RemoteAddr: r.RemoteAddr,
		Headers:    map[string][]string(r.Header.Clone()),
	}
	body, err := json.Marshal(reply)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Echo-Backend", h.info.Name)
	_, _ = w.Write(append(body, '\n'))
}

// wsIdle bounds how long a WebSocket may stay silent before the echo closes it.
const wsIdle = 60 * time.Second

// maxWSMessage bounds one WebSocket message.
const maxWSMessage = 1 << 20

// serveWebSocket echoes every message back with the same type until the
// client closes or stays idle for wsIdle.
func (h *handler) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept already wrote the HTTP error.
	}
	defer c.CloseNow()
	c.SetReadLimit(maxWSMessage)
	for {
		ctx, cancel := context.WithTimeout(r.Context(), wsIdle)
		typ, msg, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, msg)
		}
		cancel()
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusNormalClosure || errors.Is(err, context.Canceled) {
				_ = c.Close(websocket.StatusNormalClosure, "")
			}
			return
		}
	}
}
