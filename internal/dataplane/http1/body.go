package http1

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// requestBody is the body of the request a conn is serving
// (exchange.Body): Content-Length bytes or a chunked body, read from the
// connection's buffer first.
type requestBody struct {
	c         *conn
	remaining int64 // Content-Length bytes left
	chunked   bool
	cr        ChunkedReader
	done      bool
	err       error
	timeout   time.Duration
}

func (b *requestBody) reset(n int64, chunked bool) {
	b.remaining, b.chunked, b.done, b.err, b.timeout = n, chunked, !chunked && n <= 0, nil, 0
	if chunked {
		b.cr.Reset(&b.c.br, b.c.srv.cfg.MaxHeaderBytes)
	}
}

// SetReadTimeout implements exchange.Body.
func (b *requestBody) SetReadTimeout(d time.Duration) { b.timeout = d }

// Read implements exchange.Body.
func (b *requestBody) Read(p []byte) (int, error) {
	switch {
	case b.done:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	case len(p) == 0:
		return 0, nil
	}
	if b.timeout > 0 {
		_ = b.c.nc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	var n int
	var err error
	if b.chunked {
		n, err = b.cr.Read(p)
		if err == io.EOF {
			b.done = true
			return n, io.EOF
		}
	} else {
		if int64(len(p)) > b.remaining {
			p = p[:b.remaining]
		}
		n, err = b.c.br.Read(p)
		b.remaining -= int64(n)
		if b.remaining == 0 {
			b.done = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
	}
	if err != nil {
		b.err = bodyError(err)
		return n, b.err
	}
	return n, nil
}

// bodyError maps a read failure to the exchange.Body contract.
func bodyError(err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("%w: %w", exchange.ErrBodyTimeout, err)
	case errors.Is(err, ErrChunked):
		return fmt.Errorf("%w: %w", exchange.ErrBadBody, err)
	}
	return err
}

// Trailer implements exchange.Body.
func (b *requestBody) Trailer() *exchange.Header {
	if !b.done || !b.chunked {
		return nil
	}
	return b.cr.Trailer()
}
