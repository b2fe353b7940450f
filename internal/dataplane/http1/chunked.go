package http1

import (
	"bytes"
	"errors"
	"io"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
)

// Limits of the chunked decoder.
const (
	// MaxChunkLine bounds a chunk-size line with its extensions, CRLF
	// excluded. Real lines are a few bytes (signed uploads add ~90);
	// net/http refuses 4096 and more.
	MaxChunkLine = 1024
	// maxChunkExcess bounds the framing overhead beyond 16 bytes per chunk
	// plus twice the data, the allowance net/http also makes, so a sender
	// cannot make us parse unbounded extensions for little data.
	maxChunkExcess = 16 << 10
	// DefaultMaxTrailer bounds a trailer section when the caller sets none.
	DefaultMaxTrailer = 16 << 10
)

// ErrChunked is wrapped by every framing error of a chunked body.
var ErrChunked = errors.New("http1: malformed chunked encoding")

func chunkedError(reason string) error { return &chunkErr{reason} }

type chunkErr struct{ reason string }

func (e *chunkErr) Error() string { return "http1: malformed chunked encoding: " + e.reason }
func (e *chunkErr) Unwrap() error { return ErrChunked }

type chunkState uint8

const (
	stSize chunkState = iota
	stData
	stCRLF
	stTrailer
	stDone
)

// ChunkedReader decodes a chunked body (RFC 9112 §7.1) from a Reader,
// refusing what another parser could frame differently: sizes that are not
// 1-16 hex digits or exceed 2^63-1, whitespace between the size and its
// extensions or at the line end, malformed extensions, bare LF, data not
// followed by CRLF, and trailer fields that would not pass as header
// fields. Errors wrap ErrChunked, or are the source's (a timeout, EOF as
// io.ErrUnexpectedEOF); they are final. It is not safe for concurrent use.
type ChunkedReader struct {
	src        *Reader
	state      chunkState
	n          uint64
	excess     int64
	err        error
	maxTrailer int
	trailer    exchange.Header
	hasTrailer bool
}

// Reset prepares c to decode a body from src, with trailer sections of up
// to maxTrailer bytes (DefaultMaxTrailer when ≤ 0). The trailer storage is
// kept.
func (c *ChunkedReader) Reset(src *Reader, maxTrailer int) {
	if maxTrailer <= 0 {
		maxTrailer = DefaultMaxTrailer
	}
	c.trailer.Reset()
	*c = ChunkedReader{src: src, maxTrailer: maxTrailer, trailer: c.trailer}
}

// Done reports whether the body was read to its end.
func (c *ChunkedReader) Done() bool { return c.state == stDone }

// Trailer returns the trailer fields after Read returned io.EOF; nil when
// the body had none.
func (c *ChunkedReader) Trailer() *exchange.Header {
	if !c.hasTrailer {
		return nil
	}
	return &c.trailer
}

// Read reads decoded data. It returns at most the rest of one chunk, and
// returns as soon as it has data rather than block for the next chunk.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	for c.err == nil {
		switch c.state {
		case stSize:
			c.err = c.readSize()
		case stData:
			if len(p) == 0 {
				return 0, nil
			}
			if uint64(len(p)) > c.n {
				p = p[:c.n]
			}
			n, err := c.src.Read(p)
			c.n -= uint64(n)
			if c.n == 0 {
				c.state = stCRLF
			}
			if n > 0 {
				return n, nil
			}
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.err = err
		case stCRLF:
			b, err := c.need(2, 2)
			if err != nil {
				c.err = err
				break
			}
			if b[0] != '\r' || b[1] != '\n' {
				c.err = chunkedError("chunk data not followed by CRLF")
				break
			}
			c.src.Discard(2)
			c.state = stSize
		case stTrailer:
			c.err = c.readTrailer()
		case stDone:
			return 0, io.EOF
		}
	}
	return 0, c.err
}

// need returns the first n buffered bytes, filling up to max first.
func (c *ChunkedReader) need(n, max int) ([]byte, error) {
	for {
		if b := c.src.Buffered(); len(b) >= n {
			return b, nil
		}
		if err := c.fill(max); err != nil {
			return nil, err
		}
	}
}

func (c *ChunkedReader) fill(max int) error {
	err := c.src.Fill(max)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTooLarge):
		return chunkedError("line or trailer section too long")
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	}
	return err
}

// readSize reads a chunk-size line.
func (c *ChunkedReader) readSize() error {
	line, err := c.line(MaxChunkLine + 2)
	if err != nil {
		return err
	}
	size, ok := parseChunkLine(line)
	if !ok {
		return chunkedError("invalid chunk size line")
	}
	c.src.Discard(len(line) + 2)
	c.excess += int64(len(line)) + 2 - 16 - 2*int64(size)
	c.excess = max(c.excess, 0)
	if c.excess > maxChunkExcess {
		return chunkedError("too much framing for the data")
	}
	if size == 0 {
		c.state = stTrailer
		return nil
	}
	c.n, c.state = size, stData
	return nil
}

// line returns the next line without its CRLF, still buffered.
func (c *ChunkedReader) line(max int) ([]byte, error) {
	from := 0
	for {
		b := c.src.Buffered()
		if i := bytes.IndexByte(b[from:], '\n'); i >= 0 {
			i += from
			if i == 0 || b[i-1] != '\r' {
				return nil, chunkedError("bare LF")
			}
			if i+1 > max {
				return nil, chunkedError("chunk size line too long")
			}
			return b[:i-1], nil
		}
		if len(b) >= max {
			return nil, chunkedError("chunk size line too long")
		}
		from = len(b)
		if err := c.fill(max); err != nil {
			return nil, err
		}
	}
}

// parseChunkLine parses chunk-size [ chunk-ext ] (CRLF removed).
func parseChunkLine(line []byte) (uint64, bool) {
	var n uint64
	i := 0
	for ; i < len(line) && isHex(line[i]); i++ {
		if i == 16 {
			return 0, false
		}
		n = n<<4 | uint64(unhex(line[i]))
	}
	if i == 0 || n > 1<<63-1 {
		return 0, false
	}
	return n, validChunkExt(line[i:])
}

// validChunkExt checks *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )
// with ext-val = token / quoted-string, except that no whitespace may come
// before the first ";" (net/http reads "5 ;x" as a bad size) nor end the
// line.
func validChunkExt(s []byte) bool {
	first := true
	for len(s) > 0 {
		if !first {
			s = skipBWS(s)
		}
		first = false
		if len(s) == 0 || s[0] != ';' {
			return false
		}
		s = skipBWS(s[1:])
		name := tokenLen(s)
		if name == 0 {
			return false
		}
		s = s[name:]
		rest := skipBWS(s)
		if len(rest) == 0 || rest[0] != '=' {
			if len(rest) == 0 && len(s) != 0 {
				return false // trailing whitespace
			}
			continue
		}
		s = skipBWS(rest[1:])
		switch {
		case len(s) > 0 && s[0] == '"':
			q := quotedLen(s)
			if q == 0 {
				return false
			}
			s = s[q:]
		default:
			v := tokenLen(s)
			if v == 0 {
				return false
			}
			s = s[v:]
		}
		if len(s) > 0 && len(skipBWS(s)) == 0 {
			return false // trailing whitespace
		}
	}
	return true
}

func skipBWS(s []byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}

func tokenLen(s []byte) int {
	i := 0
	for i < len(s) && tchar[s[i]] {
		i++
	}
	return i
}

// quotedLen returns the length of the quoted-string at the start of s
// (RFC 9110 §5.6.4), or 0 when it is malformed.
func quotedLen(s []byte) int {
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			i++
			if i == len(s) || !(vchar[s[i]] || s[i] == ' ' || s[i] == '\t') {
				return 0
			}
		case !(vchar[c] || c == ' ' || c == '\t'):
			return 0
		}
	}
	return 0
}

// readTrailer reads the trailer section after the last chunk.
func (c *ChunkedReader) readTrailer() error {
	b, err := c.need(2, c.maxTrailer)
	if err != nil {
		return err
	}
	if b[0] == '\r' && b[1] == '\n' {
		c.src.Discard(2)
		c.state = stDone
		return nil
	}
	from := 0
	for {
		b = c.src.Buffered()
		n, resume, err := HeadLength(b, from)
		if err != nil {
			return chunkedError("bare LF in trailer section")
		}
		if n > 0 {
			if err := c.parseTrailer(string(b[:n])); err != nil {
				return err
			}
			c.src.Discard(n)
			c.state = stDone
			return nil
		}
		if len(b) >= c.maxTrailer {
			return chunkedError("trailer section too long")
		}
		from = resume
		if err := c.fill(c.maxTrailer); err != nil {
			return err
		}
	}
}

// parseTrailer parses a complete trailer section (ending in an empty line).
func (c *ChunkedReader) parseTrailer(sec string) error {
	for i := 0; ; {
		line, next, err := nextLine(sec, i)
		if err != nil {
			return chunkedError(err.Reason)
		}
		if line == "" {
			c.hasTrailer = c.trailer.Len() > 0
			return nil
		}
		name, value, ferr := splitField(line)
		if ferr != nil {
			return chunkedError("trailer field: " + ferr.Reason)
		}
		c.trailer.Add(name, value)
		i = next
	}
}

// AppendChunkHeader appends the size line of an n-byte chunk (n > 0).
func AppendChunkHeader(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for u := uint64(n); ; u >>= 4 {
		i--
		tmp[i] = digits[u&0xF]
		if u < 16 {
			break
		}
	}
	b = append(b, tmp[i:]...)
	return append(b, '\r', '\n')
}

// AppendLastChunk appends the last chunk, the trailer fields of t (nil for
// none) and the final CRLF.
func AppendLastChunk(b []byte, t *exchange.Header) []byte {
	b = append(b, "0\r\n"...)
	if t != nil {
		b = AppendFields(b, t)
	}
	return append(b, '\r', '\n')
}

// AppendFields appends each field of h as "name: value\r\n".
func AppendFields(b []byte, h *exchange.Header) []byte {
	for _, f := range h.Fields() {
		b = AppendField(b, f.Name, f.Value)
	}
	return b
}

// AppendField appends "name: value\r\n".
func AppendField(b []byte, name, value string) []byte {
	b = append(b, name...)
	b = append(b, ':', ' ')
	b = append(b, value...)
	return append(b, '\r', '\n')
}
