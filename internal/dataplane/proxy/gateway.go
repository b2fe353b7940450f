package proxy

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/filter"
	"github.com/meshgate/meshgate/internal/routing"
)

// This file runs the Gateway API features of a route (see
// routing.Filters) in the exchange pipeline, for every front end; the work
// itself is in internal/dataplane/filter.

// maxMirrors bounds the mirrored requests in flight per Handler; more are
// dropped and counted (upstream_errors_total{reason="mirror_dropped"}).
const maxMirrors = 64

// prefixOf is the matched prefix ReplacePrefixMatch replaces.
func prefixOf(rt *routing.Route) string {
	if rt.PathType == routing.PathPrefix {
		return rt.Path
	}
	return "/"
}

func targetOf(r *exchange.Request) filter.Target {
	_, q, _ := strings.Cut(r.Target, "?")
	return filter.Target{Scheme: r.Scheme, Host: r.Host, Path: r.Path, RawQuery: q}
}

// gatewayRequest runs the request filters of a Gateway API route: a
// redirect or an unresolved backend answers at once (b nil); otherwise the
// request is rewritten and mirrored, and the chosen backend returned. The
// response header modifiers are kept for relay. ts is the table rt is of.
func (x *exchangeState) gatewayRequest(ts *tableState, rt *routing.Route) *routing.Backend {
	r := x.r
	f := rt.Filters
	if f != nil && f.Redirect != nil {
		x.out.Reset()
		x.out.Add("Location", filter.Location(f.Redirect, prefixOf(rt), targetOf(r)))
		x.respond(filter.RedirectStatus(f.Redirect), "")
		return nil
	}
	b, bf, ok := x.pickPinned(ts, rt)
	if !ok {
		b, bf, ok = rt.Pick(randUint32())
	}
	if !ok {
		x.plain(500, "no valid backend for this route\n")
		return nil
	}
	if f != nil {
		filter.ModifyHeaders(f.RequestHeaders, &r.Header)
		x.respMods[0] = f.ResponseHeaders
		if f.Rewrite != nil {
			tg := targetOf(r)
			filter.Rewrite(f.Rewrite, prefixOf(rt), &tg)
			r.Host = tg.Host
			if tg.Path != r.Path {
				r.Path = tg.Path
				r.Target = (&url.URL{Path: tg.Path, RawQuery: tg.RawQuery}).RequestURI()
			}
		}
	}
	if bf != nil {
		filter.ModifyHeaders(bf.RequestHeaders, &r.Header)
		x.respMods[1] = bf.ResponseHeaders
	}
	x.mirror(f)
	x.mirror(bf)
	return b
}

// modifyResponse applies the route's response header modifiers to h, the
// head of a response of status from the chosen endpoint, and the
// affinity's cookies.
func (x *exchangeState) modifyResponse(h *exchange.Header, status int) {
	filter.ModifyHeaders(x.respMods[0], h)
	filter.ModifyHeaders(x.respMods[1], h)
	if x.bs != nil && x.bs.affinity != nil && !x.mirrored {
		x.bs.affinity.setCookie(h, x.idx, x.pinned, time.Now(), x.r.Scheme == "https")
	}
	if x.bs != nil && x.bs.learn != nil && !x.mirrored && x.idx >= 0 {
		x.bs.learn.respond(h, x.idx, status, &x.learn, time.Now(), x.r.Scheme == "https")
	}
}

// pickPinned returns the backend of rt whose session the request carries
// (a cookie or header of a rule's session persistence), and sets x.pinned
// to the endpoint it names. A session outweighs the weights: the Gateway
// API keeps it on its backend even when that backend's weight is 0. ok is
// false when the request carries no valid session of rt.
func (x *exchangeState) pickPinned(ts *tableState, rt *routing.Route) (*routing.Backend, *routing.Filters, bool) {
	var now time.Time
	for i := range rt.Backends {
		wb := &rt.Backends[i]
		if wb.Backend == nil || wb.Backend.Affinity == nil {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		if af := x.h.up.backend(ts, wb.Backend).affinity; af != nil {
			if j := af.pinned(&x.r.Header, now); j >= 0 {
				x.pinned = j
				return wb.Backend, wb.Filters, true
			}
		}
	}
	return nil, nil, false
}

// mirror sends copies of the request to the mirror backends of f, each with
// its share, and discards their responses. Requests with a body are not
// mirrored (their body streams to the primary backend once).
func (x *exchangeState) mirror(f *routing.Filters) {
	r, h := x.r, x.h
	if f == nil || len(f.Mirrors) == 0 || r.Body != nil || r.Upgrade != "" {
		return
	}
	ts := h.up.cur.Load()
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
		cp := *r // strings stay valid; the fields are copied below
		cp.Header = exchange.Header{}
		cp.Header.CopyFrom(&r.Header)
		cp.Context, cp.Close, cp.Start = nil, false, time.Now()
		go h.sendMirror(h.up.backend(ts, m.Backend), &cp)
	}
}

// sendMirror forwards a mirrored request and discards the response.
func (h *Handler) sendMirror(bs *backendState, r *exchange.Request) {
	defer func() { <-h.mirrors }()
	var w mirrorSink
	x := h.getState(&w, r)
	defer h.putState(x)
	x.bs, x.mirrored = bs, true
	x.idx = bs.pick(time.Now(), -1)
	if bs.pools != nil {
		x.forwardH1()
	} else {
		x.forwardTransport()
	}
}

// mirrorSink is the ResponseWriter of a mirrored request.
type mirrorSink struct{}

func (mirrorSink) WriteHeader(int, *exchange.Header, int64) error { return nil }
func (mirrorSink) Write(p []byte) (int, error)                    { return len(p), nil }
func (mirrorSink) Flush() error                                   { return nil }
func (mirrorSink) Finish(*exchange.Header) error                  { return nil }
