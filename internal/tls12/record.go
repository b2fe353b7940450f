package tls12

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Record content types (RFC 5246 section 6.2.1).
const (
	recordChangeCipherSpec uint8 = 20
	recordAlert            uint8 = 21
	recordHandshake        uint8 = 22
	recordApplicationData  uint8 = 23
)

// Record size limits (RFC 5246 section 6.2).
const (
	recordHeaderLen = 5
	// maxPlaintext is the largest TLSPlaintext/TLSCompressed fragment.
	maxPlaintext = 1 << 14
	// maxCiphertext is the largest TLSCiphertext fragment accepted:
	// 2^14 + 2048 as RFC 5246 allows. Longer records are refused with
	// record_overflow before any byte of them is buffered.
	maxCiphertext = maxPlaintext + 2048
	aeadTagLen    = 16
	version12     = 0x0303
)

// alertError is a TLS alert this side sent or received.
type alertError struct {
	desc     uint8
	received bool
	err      error // cause, for local alerts
}

func (e *alertError) Error() string {
	if e.received {
		return fmt.Sprintf("tls12: peer sent alert %s", alertName(e.desc))
	}
	if e.err != nil {
		return fmt.Sprintf("tls12: %s: %v", alertName(e.desc), e.err)
	}
	return "tls12: " + alertName(e.desc)
}

func (e *alertError) Unwrap() error { return e.err }

// ErrRecordMAC is wrapped by errors from records that fail authentication.
var ErrRecordMAC = errors.New("tls12: record authentication failed")

// cipherState protects one direction of the record layer. The zero value
// is the null cipher of the initial handshake.
type cipherState struct {
	aead cipher.AEAD
	iv   []byte // 4-byte GCM salt or 12-byte ChaCha20-Poly1305 IV
	// explicit is the length of the explicit nonce sent in each record.
	explicit int
	seq      uint64
}

func newCipherState(s *suite, key, iv []byte) (*cipherState, error) {
	a, err := s.aead(key)
	if err != nil {
		return nil, err
	}
	return &cipherState{aead: a, iv: append([]byte(nil), iv...), explicit: s.explicitNonce}, nil
}

// nonce builds the AEAD nonce for sequence number seq into buf: GCM
// (RFC 5288 section 3) is salt || explicit nonce, where we use seq as the
// explicit nonce; ChaCha20-Poly1305 (RFC 7905 section 2) is the IV XOR the
// left-padded sequence number.
func (cs *cipherState) nonce(buf *[12]byte, explicit []byte) []byte {
	if cs.explicit > 0 {
		copy(buf[:4], cs.iv)
		copy(buf[4:], explicit)
		return buf[:]
	}
	copy(buf[:], cs.iv)
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], cs.seq)
	for i := range s {
		buf[4+i] ^= s[i]
	}
	return buf[:]
}

// additionalData is seq_num || type || version || length (RFC 5246
// section 6.2.3.3), length being the plaintext length.
func additionalData(buf *[13]byte, seq uint64, typ uint8, n int) []byte {
	binary.BigEndian.PutUint64(buf[:8], seq)
	buf[8] = typ
	buf[9], buf[10] = 3, 3
	binary.BigEndian.PutUint16(buf[11:], uint16(n))
	return buf[:]
}

// open authenticates and decrypts a record fragment in place and returns
// the plaintext.
func (cs *cipherState) open(typ uint8, frag []byte) ([]byte, error) {
	if len(frag) < cs.explicit+aeadTagLen {
		return nil, ErrRecordMAC
	}
	var nb [12]byte
	var ab [13]byte
	nonce := cs.nonce(&nb, frag[:cs.explicit])
	ct := frag[cs.explicit:]
	ad := additionalData(&ab, cs.seq, typ, len(ct)-aeadTagLen)
	pt, err := cs.aead.Open(ct[:0], nonce, ct, ad)
	if err != nil {
		return nil, ErrRecordMAC
	}
	cs.seq++
	return pt, nil
}

// seal appends the protected fragment of plaintext pt to dst.
func (cs *cipherState) seal(dst []byte, typ uint8, pt []byte) []byte {
	var nb [12]byte
	var ab [13]byte
	var explicit [8]byte
	binary.BigEndian.PutUint64(explicit[:], cs.seq)
	if cs.explicit > 0 {
		dst = append(dst, explicit[:]...)
	}
	nonce := cs.nonce(&nb, explicit[:])
	ad := additionalData(&ab, cs.seq, typ, len(pt))
	dst = cs.aead.Seal(dst, nonce, pt, ad)
	cs.seq++
	return dst
}

func (cs *cipherState) overhead() int {
	if cs == nil {
		return 0
	}
	return cs.explicit + aeadTagLen
}

// recordReader reads TLS records from r, one at a time.
type recordReader struct {
	r   io.Reader
	in  *cipherState // nil: plaintext
	buf []byte       // buffered bytes: buf[off:end] not yet consumed
	off int
	// strictVersion requires record version 3.3 (after ServerHello);
	// before it any 3.x is accepted, as ClientHello records often say 3.1.
	strictVersion bool
	// err is sticky: once a record fails, every later read fails.
	err error
}

// readBufLen holds one maximal protected record.
const readBufLen = recordHeaderLen + maxCiphertext

// readBufs recycles read buffers: a connection holds one only while it has
// unread bytes, so idle keep-alive connections cost no 18 KiB buffer and a
// busy listener does not allocate one per connection.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 0, readBufLen); return &b }}

// release returns the buffer to the pool when nothing is buffered. The
// caller guarantees no fragment returned by next is still in use.
func (rr *recordReader) release() {
	if rr.buf == nil || rr.buffered() {
		return
	}
	b := rr.buf[:0]
	rr.buf, rr.off = nil, 0
	readBufs.Put(&b)
}

// fill ensures at least n unconsumed bytes are buffered.
func (rr *recordReader) fill(n int) error {
	if rr.buf == nil {
		rr.buf = *readBufs.Get().(*[]byte)
	}
	for len(rr.buf)-rr.off < n {
		if rr.off > 0 && rr.off == len(rr.buf) {
			rr.buf, rr.off = rr.buf[:0], 0
		}
		if cap(rr.buf)-rr.off < n {
			grown := make([]byte, len(rr.buf)-rr.off, max(n, readBufLen))
			copy(grown, rr.buf[rr.off:])
			rr.buf, rr.off = grown, 0
		}
		m, err := rr.r.Read(rr.buf[len(rr.buf):cap(rr.buf)])
		rr.buf = rr.buf[:len(rr.buf)+m]
		if err != nil && len(rr.buf)-rr.off < n {
			if err == io.EOF && len(rr.buf)-rr.off > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// buffered reports whether unconsumed bytes are buffered.
func (rr *recordReader) buffered() bool { return len(rr.buf) > rr.off }

// next reads one record and returns its type and (decrypted) fragment. The
// fragment aliases the reader's buffer and is valid until the next call.
// Errors that call for an alert are *alertError.
func (rr *recordReader) next() (uint8, []byte, error) {
	if rr.err != nil {
		return 0, nil, rr.err
	}
	typ, frag, err := rr.read()
	if err != nil {
		rr.err = err
	}
	return typ, frag, err
}

func (rr *recordReader) read() (uint8, []byte, error) {
	if err := rr.fill(recordHeaderLen); err != nil {
		return 0, nil, err
	}
	h := rr.buf[rr.off : rr.off+recordHeaderLen]
	typ, n := h[0], int(binary.BigEndian.Uint16(h[3:]))
	switch typ {
	case recordChangeCipherSpec, recordAlert, recordHandshake, recordApplicationData:
	default:
		return 0, nil, &alertError{desc: alertUnexpectedMessage, err: fmt.Errorf("record type %d", typ)}
	}
	if h[1] != 3 || (rr.strictVersion && h[2] != 3) {
		return 0, nil, &alertError{desc: alertProtocolVersion, err: fmt.Errorf("record version %d.%d", h[1], h[2])}
	}
	limit := maxPlaintext
	if rr.in != nil {
		limit = maxCiphertext
	}
	if n > limit {
		return 0, nil, &alertError{desc: alertRecordOverflow, err: fmt.Errorf("record of %d bytes", n)}
	}
	if err := rr.fill(recordHeaderLen + n); err != nil {
		return 0, nil, err
	}
	frag := rr.buf[rr.off+recordHeaderLen : rr.off+recordHeaderLen+n]
	rr.off += recordHeaderLen + n
	if rr.in == nil {
		return typ, frag, nil
	}
	pt, err := rr.in.open(typ, frag)
	if err != nil {
		return 0, nil, &alertError{desc: alertBadRecordMAC, err: err}
	}
	if len(pt) > maxPlaintext {
		return 0, nil, &alertError{desc: alertRecordOverflow, err: fmt.Errorf("plaintext of %d bytes", len(pt))}
	}
	return typ, pt, nil
}

// appendRecords appends data as records of type typ, at most maxPlaintext
// bytes each, protected by out (nil: plaintext), to dst.
func appendRecords(dst []byte, out *cipherState, typ uint8, data []byte) []byte {
	for first := true; first || len(data) > 0; first = false {
		n := min(len(data), maxPlaintext)
		start := len(dst)
		dst = append(dst, typ, 3, 3, 0, 0)
		if out == nil {
			dst = append(dst, data[:n]...)
		} else {
			dst = out.seal(dst, typ, data[:n])
		}
		binary.BigEndian.PutUint16(dst[start+3:], uint16(len(dst)-start-recordHeaderLen))
		data = data[n:]
	}
	return dst
}
