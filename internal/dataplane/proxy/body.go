package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// errBodyTimeout reports a client that stalled while sending its request
// body; the request is answered 408.
var errBodyTimeout = errors.New("proxy: client stalled sending the request body")

// timedBody is a request body with an idle timeout between reads (nginx's
// client_body_timeout): before each Read it moves the connection's (or, on
// HTTP/2, the stream's) read deadline forward; at EOF, error or finish it
// clears the deadline so it cannot hit the connection's next request or a
// long wait for the upstream response.
type timedBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration

	mu       sync.Mutex
	done     bool // deadline cleared for good
	timedOut atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			// net/http also cancels the request context on this error, so
			// the error handler looks at timedOut, not at the error.
			b.timedOut.Store(true)
			err = fmt.Errorf("%w: %w", errBodyTimeout, err)
		}
	}
	return n, err
}

// finish clears the read deadline once; safe to call concurrently with Read
// and more than once. The handler calls it before returning, because a
// transport may still read (and so touch deadlines) after RoundTrip.
func (b *timedBody) finish() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.done {
		b.done = true
		// After a timeout the expired deadline stays: net/http would
		// otherwise wait for the rest of the body before closing.
		if !b.timedOut.Load() {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
}
