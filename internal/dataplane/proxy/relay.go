package proxy

import (
	"errors"
	"io"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/dataplane/http1"
)

// relay sends the final response head read on uc to the client and
// streams its body, then returns uc to its pool when it can carry another
// request (reqDone: the whole request was sent; the body was read to its
// end; neither side asked to close) or closes it.
func (x *exchangeState) relay(uc *upConn, reqDone bool) {
	resp := &uc.resp
	x.bs.health[x.idx].succeeded()
	if resp.Status == 101 {
		x.upgrade(uc)
		return
	}
	fr := resp.Framing(x.r.Method)
	cl := int64(-1)
	if fr == http1.Length || fr == http1.NoBody {
		cl = resp.ContentLength
	}
	cleanResponse(&resp.Fields, resp, false)
	resp.Fields.Set("Server", serverName)
	x.modifyResponse(&resp.Fields, resp.Status)
	if x.h.cfg.AltSvc != "" && x.r.Scheme == "https" {
		resp.Fields.Add("Alt-Svc", x.h.cfg.AltSvc)
	}
	x.status, x.wrote = resp.Status, true
	if err := x.w.WriteHeader(resp.Status, &resp.Fields, cl); err != nil {
		uc.close()
		return
	}
	uc.clearOnRead = true
	var err error
	switch fr {
	case http1.Length:
		err = x.copyBody(uc, &uc.br, cl)
	case http1.Chunked:
		uc.chunk.Reset(&uc.br, 0)
		err = x.copyBody(uc, &uc.chunk, -1)
	case http1.UntilEOF:
		err = x.copyBody(uc, &uc.br, -1)
	}
	if err != nil {
		uc.close()
		x.abort(err)
		return
	}
	if fr == http1.Chunked {
		if t := uc.chunk.Trailer(); t != nil {
			x.out.CopyFrom(t) // uc may serve another request before Finish returns
			x.out.Del("Content-Length")
			x.out.Del("Transfer-Encoding")
		}
	}
	// Bytes beyond the response (a body on a 204, more than its
	// Content-Length) would be read as the next response: never reuse.
	if reqDone && fr != http1.UntilEOF && !resp.Close && len(uc.br.Buffered()) == 0 && x.detach() {
		x.bs.pools[x.idx].put(uc, time.Now())
	} else {
		uc.close()
	}
	var trailer *exchange.Header
	if x.out.Len() > 0 {
		trailer = &x.out
	}
	_ = x.w.Finish(trailer)
}

// abort ends an exchange whose response head was sent but whose body
// failed: the response is left unfinished, so the front end closes the
// connection (or resets the stream) instead of ending it cleanly.
func (x *exchangeState) abort(err error) {
	var ce *clientError
	if errors.As(err, &ce) {
		x.r.Close = true
		return // the client went away mid-response: not the upstream's fault
	}
	x.fail(err)
}

// copyBody streams n bytes (n < 0: to the end) of src, which reads from
// uc, to the client, flushing whenever uc has nothing more buffered: a
// stream flows as it comes, and a response that arrived whole leaves in one
// write.
func (x *exchangeState) copyBody(uc *upConn, src io.Reader, n int64) error {
	buf := x.copyBuf()
	for n != 0 {
		p := buf
		if n > 0 && int64(len(p)) > n {
			p = p[:n]
		}
		m, err := src.Read(p)
		if m > 0 {
			if _, werr := x.w.Write(p[:m]); werr != nil {
				return &clientError{werr}
			}
			if n > 0 {
				n -= int64(m)
			}
			if n != 0 && len(uc.br.Buffered()) == 0 {
				if ferr := x.w.Flush(); ferr != nil {
					return &clientError{ferr}
				}
			}
		}
		switch {
		case err == io.EOF && n < 0:
			return nil
		case err == io.EOF && n > 0:
			return io.ErrUnexpectedEOF
		case err != nil && n != 0:
			return err
		}
	}
	return nil
}

// hopByHop lists the response fields that belong to one connection (RFC
// 9110 §7.6.1) or to the framing the front end redoes, plus those
// net/http's ReverseProxy drops as hop-by-hop; Connection also names more.
var hopByHop = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding",
	"Te", "Upgrade", "Content-Length", "Proxy-Authenticate",
}

// cleanResponse removes hop-by-hop fields from a response head, keeping
// Upgrade when keepUpgrade (a 101 being passed on).
func cleanResponse(h *exchange.Header, resp *http1.ResponseHead, keepUpgrade bool) {
	h.DelFunc(func(f exchange.Field) bool {
		for _, name := range hopByHop {
			if exchange.EqualFold(f.Name, name) {
				return !(keepUpgrade && exchange.EqualFold(name, "Upgrade"))
			}
		}
		return resp.ConnectionNames && exchange.HasToken(resp.Connection, f.Name)
	})
}

// upgrade passes a 101 (Switching Protocols) on when the client asked for
// that protocol, then tunnels bytes both ways until both sides are done.
func (x *exchangeState) upgrade(uc *upConn) {
	resp := &uc.resp
	u, ok := x.w.(exchange.Upgrader)
	if x.r.Upgrade == "" || !exchange.EqualFold(resp.Upgrade, x.r.Upgrade) || !ok {
		uc.close()
		x.fail(errUpgrade)
		return
	}
	cleanResponse(&resp.Fields, resp, true)
	cs, err := u.Upgrade(&resp.Fields)
	if err != nil {
		uc.close()
		x.fail(&clientError{err})
		return
	}
	x.status, x.wrote = 101, true
	_ = uc.nc.SetDeadline(time.Time{})
	up, pending := tunnelUpstream(uc)
	tunnel(cs, up, pending)
}

// tunnelBuffer is the copy buffer of each direction of a tunnel.
const tunnelBuffer = 16 << 10

// tunnelUpstream wraps an HTTP/1.1 upstream connection after a 101: the
// bytes its reader had buffered past the head come first.
func tunnelUpstream(uc *upConn) (io.ReadWriteCloser, []byte) {
	b := uc.br.Buffered()
	pending := append([]byte(nil), b...)
	uc.br.Discard(len(b))
	uc.br.Release()
	return uc.nc, pending
}

// tunnel copies bytes between an upgraded client connection and the
// upstream in both directions until both have ended. When one side ends
// its direction cleanly, the other side's write half is closed (a
// half-close, when the upstream supports CloseWrite) and the other
// direction goes on; an error in either direction closes the upstream,
// which ends both.
func tunnel(client exchange.Stream, up io.ReadWriteCloser, pending []byte) {
	done := make(chan struct{})
	go func() { // client → upstream; owned by tunnel, which waits for it
		defer close(done)
		if err := copyStream(up, client); err != nil {
			_ = up.Close()
			_ = client.Close()
			return
		}
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			_ = up.Close()
		}
	}()
	var err error
	if len(pending) > 0 {
		_, err = client.Write(pending)
	}
	if err == nil {
		err = copyStream(client, up)
	}
	if err == nil {
		err = client.CloseWrite()
	}
	if err != nil {
		_ = up.Close() // ends both directions
		_ = client.Close()
	}
	<-done
	_ = up.Close()
}

// copyStream copies src to dst until src ends (nil) or either fails.
func copyStream(dst io.Writer, src io.Reader) error {
	buf := http1.GetBuf(tunnelBuffer)
	defer http1.PutBuf(buf)
	for {
		n, err := src.Read(buf.B)
		if n > 0 {
			if _, werr := dst.Write(buf.B[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}
