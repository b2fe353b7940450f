package http1

import (
	"errors"
	"io"
	"strings"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// message is one request read from a byte stream the way the server
// engine reads it: head, then the body its framing says.
type message struct {
	head    RequestHead
	body    string
	trailer []exchange.Field
}

// testMaxHead bounds heads in these tests (the server default).
const testMaxHead = 64 << 10

// readHead reads one request head from br.
func readHead(br *Reader, maxHead int) (string, error) {
	from := 0
	for {
		b := br.Buffered()
		n, resume, err := HeadLength(b, from)
		if err != nil {
			return "", err
		}
		if n > 0 {
			head := string(b[:n])
			br.Discard(n)
			return head, nil
		}
		if len(b) >= maxHead {
			return "", &Error{Status: 431, Reason: "head too large"}
		}
		from = resume
		if err := br.Fill(maxHead); err != nil {
			if errors.Is(err, ErrTooLarge) {
				return "", &Error{Status: 431, Reason: "head too large"}
			}
			return "", err
		}
	}
}

// readMessages reads requests from in until the first error or EOF. It
// returns the messages read completely (head and body) and the error that
// stopped it (io.EOF at a clean end).
func readMessages(in string) ([]*message, error) {
	br := NewReader(strings.NewReader(in))
	var out []*message
	for {
		if len(br.Buffered()) == 0 {
			if err := br.Fill(testMaxHead); err != nil {
				return out, err
			}
		}
		head, err := readHead(br, testMaxHead)
		if err != nil {
			return out, err
		}
		m := &message{}
		if err := ParseRequestHead(head, &m.head); err != nil {
			return out, err
		}
		switch {
		case m.head.Chunked:
			var cr ChunkedReader
			cr.Reset(br, 0)
			b, err := io.ReadAll(&cr)
			if err != nil {
				return out, err
			}
			m.body = string(b)
			if t := cr.Trailer(); t != nil {
				m.trailer = append(m.trailer, t.Fields()...)
			}
		case m.head.ContentLength > 0:
			// Bounded by what the input can hold, not by the claim.
			b, err := io.ReadAll(io.LimitReader(br, m.head.ContentLength))
			if err != nil {
				return out, err
			}
			if int64(len(b)) < m.head.ContentLength {
				return out, io.ErrUnexpectedEOF
			}
			m.body = string(b)
		}
		out = append(out, m)
	}
}
