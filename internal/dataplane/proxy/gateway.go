package proxy

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/filter"
	"github.com/meshgate/meshgate/internal/routing"
)

// This file runs the Gateway API features of a route (see
// routing.Filters) on the net/http request path; the work itself is in
// internal/dataplane/filter, shared with the other front ends.

// maxMirrors bounds the mirrored requests in flight per Handler; more are
// dropped and counted (upstream_errors_total{reason="mirror_dropped"}).
const maxMirrors = 64

// routeFeatures is what a Gateway API route leaves for the proxying that
// follows: response header modifiers and the request deadline.
type routeFeatures struct {
	resp, backendResp *routing.HeaderModifier
	// timeout: the request context carries a route deadline, whose expiry
	// is answered 504.
	timeout bool
}

// prefixOf is the matched prefix ReplacePrefixMatch replaces.
func prefixOf(rt *routing.Route) string {
	if rt.PathType == routing.PathPrefix {
		return rt.Path
	}
	return "/"
}

func schemeOf(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

// gatewayRequest runs the filters of a Gateway API route: a redirect or an
// unresolved backend answers at once (done true); otherwise the request is
// rewritten, mirrored, given the route's deadline (r may be replaced: use
// the returned one) and the chosen backend returned.
func (h *Handler) gatewayRequest(w http.ResponseWriter, r *http.Request, rt *routing.Route, start time.Time) (_ *http.Request, _ *routing.Backend, _ routeFeatures, cancel context.CancelFunc, done bool) {
	var rf routeFeatures
	f := rt.Filters
	if f != nil && f.Redirect != nil {
		loc := filter.Location(f.Redirect, prefixOf(rt), filter.Target{Scheme: schemeOf(r), Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery})
		w.Header()["Location"] = []string{loc}
		status := filter.RedirectStatus(f.Redirect)
		w.WriteHeader(status)
		h.finish(r, start, h.none, "", status)
		return r, nil, rf, nil, true
	}
	b, bf, ok := rt.Pick(rand.Uint32())
	if !ok {
		h.finish(r, start, h.none, "", h.plain(w, http.StatusInternalServerError, "no valid backend for this route\n"))
		return r, nil, rf, nil, true
	}
	hdr := filter.HTTPHeader(r.Header)
	if f != nil {
		filter.ModifyHeaders(f.RequestHeaders, hdr)
		rf.resp = f.ResponseHeaders
	}
	if bf != nil {
		filter.ModifyHeaders(bf.RequestHeaders, hdr)
		rf.backendResp = bf.ResponseHeaders
	}
	if f != nil && f.Rewrite != nil {
		tg := filter.Target{Scheme: schemeOf(r), Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		filter.Rewrite(f.Rewrite, prefixOf(rt), &tg)
		r.Host, r.URL.Path, r.URL.RawPath = tg.Host, tg.Path, ""
	}
	h.mirror(r, f, start)
	h.mirror(r, bf, start)
	if d := routeDeadline(rt.Timeouts); d > 0 {
		ctx, c := context.WithTimeout(r.Context(), d)
		r, cancel, rf.timeout = r.WithContext(ctx), c, true
	}
	return r, b, rf, cancel, false
}

// routeDeadline is the tighter of a route's two timeouts. meshgate makes
// one attempt per request (plus one retry on a refused connection), so the
// backend request timeout bounds the same round trip.
func routeDeadline(t routing.Timeouts) time.Duration {
	switch {
	case t.Request == 0:
		return t.BackendRequest
	case t.BackendRequest == 0:
		return t.Request
	}
	return min(t.Request, t.BackendRequest)
}

// modifyResponseHeaders applies a route's response header modifiers.
func (rf *routeFeatures) modifyResponseHeaders(h http.Header) {
	filter.ModifyHeaders(rf.resp, filter.HTTPHeader(h))
	filter.ModifyHeaders(rf.backendResp, filter.HTTPHeader(h))
}

// mirror sends copies of r to the mirror backends of f, each with its
// share, and discards their responses. Requests with a body are not
// mirrored (their body streams to the primary backend once).
func (h *Handler) mirror(r *http.Request, f *routing.Filters, start time.Time) {
	if f == nil || len(f.Mirrors) == 0 || (r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0) {
		return
	}
	t := h.cfg.Table.Load()
	for _, m := range f.Mirrors {
		if m.PerMillion < 1_000_000 && rand.Uint32N(1_000_000) >= m.PerMillion {
			continue
		}
		if len(m.Backend.Endpoints) == 0 {
			continue
		}
		select {
		case h.mirrors <- struct{}{}:
		default:
			h.metrics.upstream.WithLabelValues(m.Backend.Name, "mirror_dropped").Inc()
			continue
		}
		bs := h.up.backend(t, m.Backend)
		out := &http.Request{
			Method: r.Method, Host: r.Host, Header: r.Header.Clone(), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		}
		u := *r.URL
		u.Scheme, u.Host = bs.scheme, bs.b.Endpoints[bs.pick(start, -1)]
		out.URL = &u
		go h.sendMirror(bs, out)
	}
}

func (h *Handler) sendMirror(bs *backendState, req *http.Request) {
	defer func() { <-h.mirrors }()
	ctx, cancel := context.WithTimeout(context.Background(), h.cfg.ResponseTimeout)
	defer cancel()
	resp, err := bs.transport.RoundTrip(req.WithContext(ctx))
	if err != nil {
		h.metrics.upstream.WithLabelValues(bs.b.Name, "mirror").Inc()
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
}
