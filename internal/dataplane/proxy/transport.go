package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// forwardTransport sends the exchange through the backend's net/http
// transport (h2c, gRPC and HTTPS backends, which speak HTTP/2). A failed
// connect ejects the endpoint and a retryable request tries another once.
func (x *exchangeState) forwardTransport() {
	bs := x.bs
	for tries := 0; ; tries++ {
		resp, err := bs.transport.RoundTrip(x.httpRequest())
		if err != nil {
			var de *dialError
			if errors.As(err, &de) && x.connectFailed(tries) {
				continue
			}
			x.fail(err)
			return
		}
		bs.health[x.idx].succeeded()
		x.relayHTTP(resp)
		return
	}
}

// httpRequest builds the net/http request for the chosen endpoint, with
// the same fields appendRequestHead sends over HTTP/1.1.
func (x *exchangeState) httpRequest() *http.Request {
	r := x.r
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	rawPath, query, _ := strings.Cut(r.Target, "?")
	u := &url.URL{Scheme: x.bs.scheme, Host: x.bs.b.Endpoints[x.idx], Path: r.Path, RawPath: rawPath, RawQuery: query}
	if r.Target == "*" {
		u.Path, u.RawPath, u.Opaque = "", "", "*"
	}
	h := make(http.Header, r.Header.Len()+6)
	trusted := x.h.trusted(r.RemoteAddr)
	var prior []string
	for _, f := range r.Header.Fields() {
		switch x.h.fieldKind(f.Name) {
		case fieldForward:
			k := http.CanonicalHeaderKey(f.Name)
			h[k] = append(h[k], f.Value)
		case fieldXFF:
			if trusted && f.Value != "" {
				prior = append(prior, f.Value)
			}
		}
	}
	xff := r.ClientIP
	if len(prior) > 0 {
		xff = strings.Join(prior, ", ") + ", " + xff
	}
	h["X-Forwarded-For"] = []string{xff}
	h["X-Forwarded-Proto"] = []string{r.Scheme}
	h["X-Forwarded-Host"] = []string{r.Host}
	h["X-Real-Ip"] = []string{r.ClientIP}
	if r.EarlyData {
		h["Early-Data"] = []string{"1"} // RFC 8470 §5.1
	}
	if r.TrailersOK {
		h["Te"] = []string{"trailers"}
	}
	if r.Upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{r.Upgrade}
	}
	req := (&http.Request{
		Method: r.Method, URL: u, Host: r.Host, Header: h,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}).WithContext(ctx)
	if r.Body != nil {
		if r.ExpectContinue {
			h["Expect"] = []string{"100-continue"}
		}
		req.Body = &transportBody{x: x}
		req.ContentLength = r.ContentLength
	}
	return req
}

// transportBody is the request body handed to a net/http transport: it
// counts against the body limit, tells an Expect: 100-continue client to
// go on when the transport starts reading, and marks client failures.
type transportBody struct {
	x     *exchangeState
	total int64
}

func (b *transportBody) Read(p []byte) (int, error) {
	x := b.x
	if x.r.ExpectContinue {
		x.continue100()
	}
	n, err := x.r.Body.Read(p)
	b.total += int64(n)
	if limit := x.bs.maxBody; limit > 0 && b.total > limit {
		return n, errBodyTooLarge
	}
	if err != nil && err != io.EOF {
		err = clientErr(err)
	}
	return n, err
}

func (b *transportBody) Close() error { return nil }

// relayHTTP sends a net/http response to the client.
func (x *exchangeState) relayHTTP(resp *http.Response) {
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		x.upgradeHTTP(resp)
		return
	}
	x.out.Reset()
	copyResponseHeader(&x.out, resp.Header)
	if len(resp.Trailer) > 0 {
		names := make([]string, 0, len(resp.Trailer))
		for k := range resp.Trailer {
			names = append(names, k)
		}
		sort.Strings(names)
		x.out.Add("Trailer", strings.Join(names, ", "))
	}
	x.modifyResponse(&x.out, resp.StatusCode)
	if x.h.cfg.AltSvc != "" && x.r.Scheme == "https" {
		x.out.Add("Alt-Svc", x.h.cfg.AltSvc)
	}
	x.status, x.wrote = resp.StatusCode, true
	if err := x.w.WriteHeader(resp.StatusCode, &x.out, resp.ContentLength); err != nil {
		return
	}
	buf := x.copyBuf()
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := x.w.Write(buf[:n]); werr != nil {
				x.abort(&clientError{werr})
				return
			}
			if resp.ContentLength < 0 {
				if ferr := x.w.Flush(); ferr != nil {
					x.abort(&clientError{ferr})
					return
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			x.abort(err)
			return
		}
	}
	x.out.Reset()
	copyResponseHeader(&x.out, resp.Trailer)
	var trailer *exchange.Header
	if x.out.Len() > 0 {
		trailer = &x.out
	}
	_ = x.w.Finish(trailer)
}

// copyResponseHeader adds the end-to-end fields of h to dst (in sorted
// order, for a stable output).
func copyResponseHeader(dst *exchange.Header, h http.Header) {
	conn := strings.Join(h["Connection"], ",")
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if isHopByHop(k) || (conn != "" && exchange.HasToken(conn, k)) {
			continue
		}
		for _, v := range h[k] {
			dst.Add(k, v)
		}
	}
}

func isHopByHop(name string) bool {
	for _, n := range hopByHop {
		if exchange.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// upgradeHTTP passes on a 101 that a net/http transport returned.
func (x *exchangeState) upgradeHTTP(resp *http.Response) {
	u, ok := x.w.(exchange.Upgrader)
	up, isRW := resp.Body.(io.ReadWriteCloser)
	if x.r.Upgrade == "" || !exchange.EqualFold(resp.Header.Get("Upgrade"), x.r.Upgrade) || !ok || !isRW {
		x.fail(errUpgrade)
		return
	}
	x.out.Reset()
	copyResponseHeader(&x.out, resp.Header)
	x.out.Add("Upgrade", resp.Header.Get("Upgrade"))
	cs, err := u.Upgrade(&x.out)
	if err != nil {
		x.fail(&clientError{err})
		return
	}
	x.status, x.wrote = 101, true
	tunnel(cs, up, nil)
}
