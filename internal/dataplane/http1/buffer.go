package http1

import (
	"errors"
	"io"
	"sync"
)

// Buffer size classes. Small is what a connection borrows for a request
// head or a short body; Large is the copy buffer for bodies; bigger heads
// (up to MaxHeaderBytes) grow through the classes in between.
const (
	SmallBuffer = 4 << 10
	LargeBuffer = 32 << 10
)

var classes = [...]int{SmallBuffer, 16 << 10, LargeBuffer, 64 << 10, 256 << 10, 1 << 20}

// Buf is a pooled byte buffer. The pointer travels with the slice so that
// returning it to its pool does not allocate.
type Buf struct {
	B     []byte
	class int8 // index in classes, -1 when not pooled
}

var pools [len(classes)]sync.Pool

// GetBuf returns a buffer of at least size bytes (len == cap), from a pool
// when size fits a class. Release it with PutBuf.
func GetBuf(size int) *Buf {
	for i, c := range classes {
		if size <= c {
			if b, ok := pools[i].Get().(*Buf); ok {
				return b
			}
			return &Buf{B: make([]byte, c), class: int8(i)}
		}
	}
	return &Buf{B: make([]byte, size), class: -1}
}

// PutBuf returns b to its pool; b must not be used afterwards. nil is
// ignored.
func PutBuf(b *Buf) {
	if b != nil && b.class >= 0 {
		pools[b.class].Put(b)
	}
}

// ErrTooLarge is returned by Reader.Fill when the buffer may grow no
// further.
var ErrTooLarge = errors.New("http1: message head too large")

// Reader buffers reads from a connection. It holds a pooled buffer only
// while it has one on loan: Release hands it back (a keep-alive connection
// between requests holds none), and the next Fill borrows again. It is not
// safe for concurrent use.
type Reader struct {
	src  io.Reader
	buf  *Buf
	r, w int
}

// NewReader returns a Reader over src with no buffer borrowed yet.
func NewReader(src io.Reader) *Reader { return &Reader{src: src} }

// Reset makes r read from src, dropping buffered bytes (the buffer stays).
func (r *Reader) Reset(src io.Reader) {
	r.src, r.r, r.w = src, 0, 0
}

// Buffered returns the unread buffered bytes; they stay valid until the
// next Fill, Read or Release.
func (r *Reader) Buffered() []byte {
	if r.buf == nil {
		return nil
	}
	return r.buf.B[r.r:r.w]
}

// Discard drops n buffered bytes (n ≤ len(Buffered())).
func (r *Reader) Discard(n int) {
	r.r += n
	if r.r == r.w {
		r.r, r.w = 0, 0
	}
}

// Fill reads once more from the source into the buffer, first moving the
// unread bytes to its start and, when it is full, growing it up to max
// bytes (ErrTooLarge beyond). It returns the source's error, if any, after
// keeping what was read.
func (r *Reader) Fill(max int) error {
	if r.buf == nil {
		r.buf = GetBuf(min(SmallBuffer, max))
	}
	if r.r > 0 {
		r.w = copy(r.buf.B, r.buf.B[r.r:r.w])
		r.r = 0
	}
	if r.w >= min(len(r.buf.B), max) {
		if r.w >= max {
			return ErrTooLarge
		}
		nb := GetBuf(min(2*len(r.buf.B), max))
		copy(nb.B, r.buf.B[:r.w])
		PutBuf(r.buf)
		r.buf = nb
	}
	n, err := r.src.Read(r.buf.B[r.w:min(len(r.buf.B), max)])
	r.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Read reads buffered bytes first; with none buffered it reads from the
// source, straight into p when p is at least as large as a small buffer.
func (r *Reader) Read(p []byte) (int, error) {
	if r.r < r.w {
		n := copy(p, r.buf.B[r.r:r.w])
		r.Discard(n)
		return n, nil
	}
	if len(p) >= SmallBuffer || r.buf == nil && len(p) > 0 {
		return r.src.Read(p)
	}
	if err := r.Fill(SmallBuffer); err != nil && r.w == 0 {
		return 0, err
	}
	n := copy(p, r.buf.B[r.r:r.w])
	r.Discard(n)
	return n, nil
}

// Release returns the buffer to its pool when nothing is buffered, and
// reports whether r now holds no buffer.
func (r *Reader) Release() bool {
	if r.buf != nil && r.r == r.w {
		PutBuf(r.buf)
		r.buf, r.r, r.w = nil, 0, 0
	}
	return r.buf == nil
}

// Prepend puts p (read elsewhere, for example into a small idle buffer)
// before the buffered bytes, borrowing a buffer when needed.
func (r *Reader) Prepend(p []byte) {
	if len(p) == 0 {
		return
	}
	if r.buf == nil {
		r.buf = GetBuf(max(SmallBuffer, len(p)))
	}
	if r.r >= len(p) {
		r.r -= len(p)
		copy(r.buf.B[r.r:], p)
		return
	}
	rest := r.w - r.r
	if len(p)+rest > len(r.buf.B) {
		nb := GetBuf(len(p) + rest)
		copy(nb.B[len(p):], r.buf.B[r.r:r.w])
		PutBuf(r.buf)
		r.buf = nb
	} else {
		copy(r.buf.B[len(p):], r.buf.B[r.r:r.w])
	}
	copy(r.buf.B, p)
	r.r, r.w = 0, len(p)+rest
}
