package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// ServeHTTP implements http.Handler for the front ends built on net/http
// (HTTP/3 over quic-go; x/net/http2's server too): it presents r as an
// exchange and serves it through ServeExchange. A response whose body
// fails after its head was sent aborts the stream (http.ErrAbortHandler).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a, _ := adapters.Get().(*adapter)
	if a == nil {
		a = new(adapter)
	}
	a.fill(w, r)
	h.ServeExchange(&a.rw, &a.req)
	a.body.finish()
	abort := a.rw.wroteFinal && !a.rw.finished && a.rw.status != http.StatusSwitchingProtocols
	a.reset()
	adapters.Put(a)
	if abort {
		panic(http.ErrAbortHandler)
	}
}

var adapters sync.Pool // *adapter

// adapter holds an exchange made from a net/http request.
type adapter struct {
	req  exchange.Request
	rw   responseAdapter
	body bodyAdapter
}

// requestHopByHop lists the request fields a proxy does not forward
// (RFC 9110 §7.6.1 and those net/http's ReverseProxy drops), besides those
// Connection names. HTTP/2 and HTTP/3 servers refuse most of them already.
var requestHopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Te",
	"Upgrade", "Content-Length", "Proxy-Authorization", "Proxy-Authenticate", "Expect", "Host",
}

func (a *adapter) fill(w http.ResponseWriter, r *http.Request) {
	q := &a.req
	switch r.ProtoMajor {
	case 2:
		q.Proto = exchange.HTTP2
	case 3:
		q.Proto = exchange.HTTP3
	default:
		q.Proto = exchange.HTTP11
		if r.ProtoMinor == 0 {
			q.Proto = exchange.HTTP10
		}
	}
	q.Method, q.Host, q.Scheme = r.Method, r.Host, "http"
	q.ServerName, q.EarlyData = "", false
	if r.TLS != nil {
		q.Scheme = "https"
		q.ServerName = r.TLS.ServerName
		// quic-go reports a request read before the handshake completed
		// as !HandshakeComplete: it came in 0-RTT early data.
		q.EarlyData = !r.TLS.HandshakeComplete
	}
	q.Target = r.RequestURI
	if q.Target == "" || (q.Target[0] != '/' && q.Target != "*") {
		q.Target = r.URL.RequestURI()
	}
	q.Path = r.URL.Path
	if q.Path == "" {
		q.Path = "/"
	}
	conn := ""
	if v := r.Header["Connection"]; len(v) > 0 {
		conn = v[0]
	}
	for k, vv := range r.Header {
		if dropRequestField(k, conn) {
			continue
		}
		for _, v := range vv {
			q.Header.Add(k, v)
		}
	}
	for _, v := range r.Header["Te"] {
		q.TrailersOK = q.TrailersOK || exchange.HasToken(v, "trailers")
	}
	q.ContentLength = r.ContentLength
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		a.body.body, a.body.req = r.Body, r
		a.body.dl, _ = w.(interface{ SetReadDeadline(time.Time) error })
		q.Body = &a.body
	} else {
		q.ContentLength = 0
	}
	q.RemoteAddr, _ = netip.ParseAddrPort(r.RemoteAddr)
	q.ClientIP = r.RemoteAddr
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		q.ClientIP = host
	}
	q.Context, q.Start = r.Context(), time.Now()
	a.rw.w, a.rw.head = w, r.Method == http.MethodHead
}

func dropRequestField(k, conn string) bool {
	for _, n := range requestHopByHop {
		if exchange.EqualFold(k, n) {
			return true
		}
	}
	return conn != "" && exchange.HasToken(conn, k)
}

func (a *adapter) reset() {
	h := a.req.Header
	h.Reset()
	t := a.body.trailer
	t.Reset()
	*a = adapter{req: exchange.Request{Header: h}, body: bodyAdapter{trailer: t}}
}

// responseAdapter writes an exchange's response to an http.ResponseWriter.
type responseAdapter struct {
	w                    http.ResponseWriter
	head                 bool
	status               int
	wroteFinal, finished bool
}

// WriteHeader implements exchange.ResponseWriter. A 100 (Continue) is left
// to the server, which sends it when the body is first read.
func (rw *responseAdapter) WriteHeader(status int, h *exchange.Header, contentLength int64) error {
	if rw.wroteFinal {
		return errors.New("proxy: response head written twice")
	}
	hdr := rw.w.Header()
	if status < 200 && status != http.StatusSwitchingProtocols {
		if status == http.StatusContinue {
			return nil
		}
		for _, f := range h.Fields() {
			hdr[f.Name] = append(hdr[f.Name], f.Value)
		}
		rw.w.WriteHeader(status)
		clear(hdr) // the interim fields must not reach the final head
		return nil
	}
	// One backing array for every value (not one slice per field): the
	// server reads the map after ServeHTTP returns (quic-go writes the head
	// then), so it is the response's own, never reused.
	vals := make([]string, 0, h.Len())
	for _, f := range h.Fields() {
		if vv, ok := hdr[f.Name]; ok {
			hdr[f.Name] = append(vv, f.Value)
			continue
		}
		vals = append(vals, f.Value)
		hdr[f.Name] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	if contentLength >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		hdr["Content-Length"] = []string{strconv.FormatInt(contentLength, 10)}
	}
	rw.status, rw.wroteFinal = status, true
	rw.w.WriteHeader(status)
	return nil
}

func (rw *responseAdapter) Write(p []byte) (int, error) {
	if rw.head {
		return len(p), nil
	}
	return rw.w.Write(p)
}

func (rw *responseAdapter) Flush() error {
	if f, ok := rw.w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

func (rw *responseAdapter) Finish(trailer *exchange.Header) error {
	if trailer != nil {
		hdr := rw.w.Header()
		for _, f := range trailer.Fields() {
			k := http.TrailerPrefix + f.Name
			hdr[k] = append(hdr[k], f.Value)
		}
	}
	rw.finished = true
	return nil
}

// bodyAdapter is a net/http request body as an exchange.Body, with the
// read timeout set per read on the stream (x/net/http2 and quic-go
// response writers implement SetReadDeadline).
type bodyAdapter struct {
	body     io.ReadCloser
	req      *http.Request
	dl       interface{ SetReadDeadline(time.Time) error }
	timeout  time.Duration
	done     bool
	timedOut bool
	eof      bool
	trailer  exchange.Header
}

func (b *bodyAdapter) SetReadTimeout(d time.Duration) { b.timeout = d }

func (b *bodyAdapter) Read(p []byte) (int, error) {
	if b.timeout > 0 && b.dl != nil && !b.done {
		_ = b.dl.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.body.Read(p)
	if err == nil {
		return n, nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		b.timedOut = true
		err = fmt.Errorf("%w: %w", exchange.ErrBodyTimeout, err)
	}
	b.eof = err == io.EOF
	b.finish()
	return n, err
}

// finish clears the stream's read deadline once the body ended, unless it
// expired: the server would otherwise wait for the rest of a stalled body.
func (b *bodyAdapter) finish() {
	if b.done || b.dl == nil || b.body == nil {
		return
	}
	b.done = true
	if !b.timedOut && b.timeout > 0 {
		_ = b.dl.SetReadDeadline(time.Time{})
	}
}

func (b *bodyAdapter) Trailer() *exchange.Header {
	if !b.eof || len(b.req.Trailer) == 0 {
		return nil
	}
	b.trailer.Reset()
	for k, vv := range b.req.Trailer {
		for _, v := range vv {
			b.trailer.Add(k, v)
		}
	}
	if b.trailer.Len() == 0 {
		return nil
	}
	return &b.trailer
}
