package tls12

// reader is a bounds-checked cursor over a handshake message. After the
// first short read ok is false and every later read yields zero values, so
// parsers check ok once per structure instead of after every field.
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) *reader { return &reader{b: b, ok: true} }

func (r *reader) take(n int) []byte {
	if !r.ok || n < 0 || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	v := r.take(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.take(2)
	if v == nil {
		return 0
	}
	return uint16(v[0])<<8 | uint16(v[1])
}

func (r *reader) u24() int {
	v := r.take(3)
	if v == nil {
		return 0
	}
	return int(v[0])<<16 | int(v[1])<<8 | int(v[2])
}

// vec8, vec16 and vec24 read an opaque vector with a 1-, 2- or 3-byte
// length prefix.
func (r *reader) vec8() []byte  { return r.take(int(r.u8())) }
func (r *reader) vec16() []byte { return r.take(int(r.u16())) }
func (r *reader) vec24() []byte { return r.take(r.u24()) }

// done reports whether every byte was consumed without a short read.
func (r *reader) done() bool { return r.ok && len(r.b) == 0 }

// builder appends TLS structures to a byte slice; vectors are written with
// a placeholder length that the closing call patches.
type builder struct{ b []byte }

func (w *builder) u8(v uint8)   { w.b = append(w.b, v) }
func (w *builder) u16(v uint16) { w.b = append(w.b, byte(v>>8), byte(v)) }
func (w *builder) raw(p []byte) { w.b = append(w.b, p...) }
func (w *builder) u24(v int)    { w.b = append(w.b, byte(v>>16), byte(v>>8), byte(v)) }
func (w *builder) open(n int) int {
	start := len(w.b)
	w.b = append(w.b, make([]byte, n)...)
	return start
}

// close patches the n-byte length of the vector opened at start.
func (w *builder) close(start, n int) {
	l := len(w.b) - start - n
	for i := n - 1; i >= 0; i-- {
		w.b[start+i] = byte(l)
		l >>= 8
	}
}

// vec writes a vector with an n-byte length prefix whose content f writes.
func (w *builder) vec(n int, f func()) {
	start := w.open(n)
	f()
	w.close(start, n)
}

// handshake wraps body f as a handshake message of type typ (RFC 5246
// section 7.4: type, uint24 length, body).
func (w *builder) handshake(typ uint8, f func()) {
	w.u8(typ)
	w.vec(3, f)
}
