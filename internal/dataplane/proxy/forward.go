package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
)

const (
	// expectContinueTimeout bounds the wait for an upstream 100 (Continue)
	// before the body is sent anyway, as http.Transport's
	// ExpectContinueTimeout.
	expectContinueTimeout = time.Second
	// maxResponseHead bounds an upstream response head (http.Transport's
	// default is 10 MB; cookies and CSP headers stay far below this).
	maxResponseHead = 1 << 20
)

var (
	errBodyTooLarge = errors.New("proxy: request body too large")
	errUpstreamHead = errors.New("proxy: malformed upstream response head")
	errUpgrade      = errors.New("proxy: backend switched protocols unasked or to another protocol")
)

// clientError marks a failure on the client's side of the exchange (its
// body could not be read, or the response could not be written).
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// forwardH1 sends the exchange to the chosen endpoint of a plain-HTTP
// backend over a pooled connection and relays the response. A failed
// connect ejects the endpoint and, for a retryable request, tries another
// endpoint once; a pooled connection found closed before any byte of the
// response is replaced by a fresh one once.
func (x *exchangeState) forwardH1() {
	fresh := false
	for tries := 0; tries < 3; tries++ {
		uc, err := x.conn(time.Now(), fresh)
		if err != nil {
			if x.connectFailed(tries) {
				continue
			}
			x.fail(err)
			return
		}
		stale, err := x.roundTrip(uc)
		if err == nil {
			return
		}
		if stale && !fresh && !x.wrote {
			fresh = true
			continue
		}
		x.fail(err)
		return
	}
}

// connectFailed ejects the chosen endpoint after a failed connect and,
// on the first try of a request that may go elsewhere, picks another: it
// reports whether to try again.
func (x *exchangeState) connectFailed(tries int) bool {
	bs, now := x.bs, time.Now()
	bs.health[x.idx].failed(now)
	if tries == 0 && retryable(x.r) && len(bs.b.Endpoints) > 1 && !x.canceled() {
		x.idx = bs.pick(now, x.idx)
		return true
	}
	return false
}

// conn returns a pooled connection to the chosen endpoint (checked still
// open when the request could not be retried after a failure), or dials.
func (x *exchangeState) conn(now time.Time, fresh bool) (*upConn, error) {
	pool := x.bs.pools[x.idx]
	for !fresh {
		uc := pool.get(now)
		if uc == nil {
			break
		}
		if replayable(x.r) {
			return uc, nil
		}
		if uc.readDeadline {
			_ = uc.nc.SetReadDeadline(time.Time{})
			uc.readDeadline = false
		}
		if uc.stillOpen() {
			return uc, nil
		}
		uc.close()
	}
	return pool.dial(x.bs.connectTimeout)
}

// roundTrip writes the request on uc and relays the response. stale
// reports a failure that a fresh connection may not have: uc was reused
// and failed before the first response byte, with the whole request still
// replayable.
func (x *exchangeState) roundTrip(uc *upConn) (stale bool, err error) {
	r := x.r
	if r.Context != nil && r.Context.Done() != nil {
		// A client that goes away (an HTTP/2 stream reset) unblocks the
		// upstream I/O; relay stops this before pooling uc.
		x.stopCancel = context.AfterFunc(r.Context, uc.cancelIO)
		defer x.detach()
	}
	wb := http1.GetBuf(http1.SmallBuffer)
	b := x.appendRequestHead(wb.B[:0])
	inBuf := r.Body == nil
	if !inBuf && !r.ExpectContinue && r.ContentLength > 0 && r.ContentLength <= int64(cap(b)-len(b)) {
		n := int(r.ContentLength)
		if _, err := io.ReadFull(r.Body, b[len(b):len(b)+n]); err != nil {
			http1.PutBuf(wb)
			if x.detach() {
				x.bs.pools[x.idx].put(uc, time.Now()) // nothing was sent on it
			} else {
				uc.close()
			}
			return false, clientErr(err)
		}
		b, inBuf = b[:len(b)+n], true
	}
	_, err = uc.nc.Write(b)
	http1.PutBuf(wb)
	if err != nil {
		uc.close()
		return uc.reused && r.Body == nil, err
	}
	deadline := x.responseDeadline()
	if !inBuf {
		if r.ExpectContinue {
			final, err := x.awaitContinue(uc, deadline)
			if err != nil {
				uc.close()
				return false, err
			}
			if final {
				// Answered before the body was sent: the request on uc is
				// unfinished and the client's body unread.
				r.Close = true
				x.relay(uc, false)
				return false, nil
			}
		}
		if err := x.sendBody(uc); err != nil {
			uc.close()
			return false, err
		}
	}
	got, err := x.readFinalHead(uc, deadline)
	if err != nil {
		uc.close()
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		return uc.reused && r.Body == nil && !got && !timeout && idempotent(r.Method), err
	}
	x.relay(uc, true)
	return false, nil
}

// detach stops the client-cancellation hook of roundTrip, and reports
// whether it had not fired (else the connection's deadline was spoiled).
func (x *exchangeState) detach() bool {
	if x.stopCancel == nil {
		return true
	}
	ok := x.stopCancel()
	x.stopCancel = nil
	return ok
}

// responseDeadline is when the upstream response head must have arrived:
// the backend's response timeout, or the route's backend-request or
// request timeout when shorter.
func (x *exchangeState) responseDeadline() time.Time {
	d := x.bs.responseTimeout
	var req time.Duration
	if rt := x.rt; rt != nil {
		if t := rt.Timeouts.BackendRequest; t > 0 && t < d {
			d = t
		}
		req = rt.Timeouts.Request
	}
	deadline := time.Now().Add(d)
	if req > 0 {
		if rd := x.r.Start.Add(req); rd.Before(deadline) {
			deadline = rd
		}
	}
	return deadline
}

// readHead reads one response head into uc.resp. got reports whether any
// byte of it arrived.
func (x *exchangeState) readHead(uc *upConn, deadline time.Time) (got bool, err error) {
	_ = uc.nc.SetReadDeadline(deadline)
	uc.readDeadline, uc.clearOnRead = true, false
	from := 0
	for {
		b := uc.br.Buffered()
		got = got || len(b) > 0
		n, resume, err := http1.HeadLength(b, from)
		if err != nil {
			return true, errUpstreamHead
		}
		if n > 0 {
			head := string(b[:n])
			uc.br.Discard(n)
			if err := http1.ParseResponseHead(head, &uc.resp); err != nil {
				return true, errUpstreamHead
			}
			return true, nil
		}
		if len(b) >= maxResponseHead {
			return true, errUpstreamHead
		}
		from = resume
		if err := uc.br.Fill(maxResponseHead); err != nil {
			if errors.Is(err, http1.ErrTooLarge) {
				err = errUpstreamHead
			}
			return got || len(uc.br.Buffered()) > 0, err
		}
	}
}

// readFinalHead reads response heads until a final one (or a 101),
// forwarding informational ones to the client.
func (x *exchangeState) readFinalHead(uc *upConn, deadline time.Time) (got bool, err error) {
	for {
		g, err := x.readHead(uc, deadline)
		got = got || g
		if err != nil {
			return got, err
		}
		s := uc.resp.Status
		if s >= 200 || s == 101 {
			return true, nil
		}
		x.interim(uc)
	}
}

// interim forwards an informational response (100, 103, ...).
func (x *exchangeState) interim(uc *upConn) {
	if uc.resp.Status == 100 {
		if x.sent100 {
			return
		}
		x.sent100 = true
	}
	cleanResponse(&uc.resp.Fields, &uc.resp, false)
	_ = x.w.WriteHeader(uc.resp.Status, &uc.resp.Fields, -1)
}

// awaitContinue waits, after a head with "Expect: 100-continue", for the
// upstream's 100 (forwarded), a final response (final true: the body is
// not to be sent) or expectContinueTimeout, after which the client is told
// to continue anyway.
func (x *exchangeState) awaitContinue(uc *upConn, deadline time.Time) (final bool, err error) {
	wait := time.Now().Add(expectContinueTimeout)
	if deadline.Before(wait) {
		wait = deadline
	}
	for {
		_, err := x.readHead(uc, wait)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout() && wait.Before(deadline):
			x.continue100()
			return false, nil
		case err != nil:
			return false, err
		case uc.resp.Status == 100:
			x.interim(uc)
			return false, nil
		case uc.resp.Status >= 200 || uc.resp.Status == 101:
			return true, nil
		}
		x.interim(uc)
	}
}

// continue100 tells the client to send its body.
func (x *exchangeState) continue100() {
	if !x.sent100 {
		x.sent100 = true
		x.out.Reset()
		_ = x.w.WriteHeader(100, &x.out, -1)
	}
}

// sendBody streams the request body to uc: Content-Length bytes, or
// chunked when the length is unknown, counting against the body limit.
func (x *exchangeState) sendBody(uc *upConn) error {
	r, limit := x.r, x.bs.maxBody
	_ = uc.nc.SetWriteDeadline(time.Now().Add(x.bs.responseTimeout))
	defer func() { _ = uc.nc.SetWriteDeadline(time.Time{}) }()
	buf := x.copyBuf()
	if r.ContentLength >= 0 {
		for left := r.ContentLength; left > 0; {
			n, err := r.Body.Read(buf[:min(int64(len(buf)), left)])
			if n > 0 {
				left -= int64(n)
				if _, werr := uc.nc.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err != nil && (left > 0 || err != io.EOF) {
				return clientErr(err)
			}
		}
		return nil
	}
	const pre = 18 // room for the largest chunk-size line
	var total int64
	for {
		n, err := r.Body.Read(buf[pre : len(buf)-2])
		if n > 0 {
			total += int64(n)
			if limit > 0 && total > limit {
				return errBodyTooLarge
			}
			var hb [pre]byte
			h := http1.AppendChunkHeader(hb[:0], n)
			start := pre - len(h)
			copy(buf[start:], h)
			buf[pre+n], buf[pre+n+1] = '\r', '\n'
			if _, werr := uc.nc.Write(buf[start : pre+n+2]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			last := http1.AppendLastChunk(buf[:0], r.Body.Trailer())
			_, werr := uc.nc.Write(last)
			return werr
		}
		if err != nil {
			return clientErr(err)
		}
	}
}

// clientErr wraps a request-body read failure; io.EOF before the announced
// length means the client went away.
func clientErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return &clientError{err: err}
}

// fail answers an exchange that could not be forwarded: 413 for an
// oversized body, 408 for a stalled one, 400 for a malformed one, 504 for
// timeouts, 502 otherwise, and nothing to a client that went away (499 in
// the access log and metrics). After the response head was sent it can
// only abort.
func (x *exchangeState) fail(err error) {
	reason, status := x.classify(err)
	name := x.bs.b.Name
	if x.mirrored {
		x.h.metrics.upstream.WithLabelValues(name, "mirror").Inc()
		return
	}
	x.h.metrics.upstream.WithLabelValues(name, reason).Inc()
	if l := x.h.log.V(1); l.Enabled() {
		l.Info("upstream error", "backend", name, "reason", reason, "err", err.Error())
	}
	r := x.r
	if x.wrote {
		r.Close = true
		return
	}
	x.status = status
	switch status {
	case 499:
		r.Close = true
		return
	case http.StatusRequestTimeout, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
		r.Close = r.Close || r.Body != nil
	}
	x.plain(status, http.StatusText(status)+"\n")
}

func (x *exchangeState) classify(err error) (reason string, status int) {
	var ce *clientError
	var ne net.Error
	var de *dialError
	switch {
	case errors.Is(err, errBodyTooLarge):
		return "body_too_large", http.StatusRequestEntityTooLarge
	case errors.Is(err, exchange.ErrBodyTimeout):
		return "client_body_timeout", http.StatusRequestTimeout
	case errors.Is(err, exchange.ErrBadBody):
		return "bad_body", http.StatusBadRequest
	case errors.As(err, &ce) || x.canceled():
		return "canceled", 499 // nginx's "client closed request"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout", http.StatusGatewayTimeout
	case errors.As(err, &de):
		return "connect", http.StatusBadGateway
	}
	return "other", http.StatusBadGateway
}

func (x *exchangeState) canceled() bool {
	return x.r.Context != nil && x.r.Context.Err() != nil
}

// retryable reports whether a request may be sent to another endpoint
// after a failed connect: idempotent method, no body, no protocol upgrade.
func retryable(r *exchange.Request) bool {
	return idempotent(r.Method) && r.Body == nil && r.Upgrade == ""
}

// replayable reports whether a request may be sent again on a fresh
// connection after a reused one failed before answering, without asking
// the pool whether the connection is still open first: as net/http's
// Transport, an idempotent request (or one with an Idempotency-Key)
// without a body.
func replayable(r *exchange.Request) bool {
	if r.Body != nil || r.Upgrade != "" {
		return false
	}
	return idempotent(r.Method) || r.Header.Has("Idempotency-Key") || r.Header.Has("X-Idempotency-Key")
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
