package tls12

import (
	"errors"
	"fmt"
	"io"
)

// readHandshake returns the next handshake message (header included),
// which must be of type want. Records are reassembled as RFC 5246 section
// 6.2.1 allows: a message may span records and a record may hold several
// messages. Called with in held.
func (c *Conn) readHandshake(want uint8) ([]byte, error) {
	for {
		if len(c.in.hs) >= 4 {
			n := int(c.in.hs[1])<<16 | int(c.in.hs[2])<<8 | int(c.in.hs[3])
			if n > maxHandshakeLen {
				return nil, &alertError{desc: alertDecodeError, err: fmt.Errorf("handshake message of %d bytes", n)}
			}
			if len(c.in.hs) >= 4+n {
				msg := append([]byte(nil), c.in.hs[:4+n]...)
				c.in.hs = c.in.hs[4+n:]
				if msg[0] != want {
					return nil, &alertError{desc: alertUnexpectedMessage, err: fmt.Errorf("handshake message %d, want %d", msg[0], want)}
				}
				return msg, nil
			}
		}
		if err := c.readHandshakeRecord(); err != nil {
			return nil, err
		}
	}
}

// readHandshakeRecord appends the next record's handshake bytes to in.hs.
func (c *Conn) readHandshakeRecord() error {
	typ, frag, err := c.in.rr.next()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	switch typ {
	case recordHandshake:
		if len(frag) == 0 {
			return &alertError{desc: alertUnexpectedMessage, err: errors.New("empty handshake record")}
		}
		if len(c.in.hs) == 0 {
			c.in.hs = c.in.hs[:0]
		}
		c.in.hs = append(c.in.hs, frag...)
		return nil
	case recordAlert:
		if len(frag) != 2 {
			return &alertError{desc: alertDecodeError, err: errors.New("alert record length")}
		}
		return &alertError{desc: frag[1], received: true}
	default:
		return &alertError{desc: alertUnexpectedMessage, err: fmt.Errorf("record type %d during the handshake", typ)}
	}
}

// readCCS reads the client's ChangeCipherSpec and switches reading to cs.
// No handshake bytes may be pending (a message split across the key
// change would mix protections).
func (c *Conn) readCCS(cs *cipherState) error {
	if len(c.in.hs) != 0 {
		return &alertError{desc: alertUnexpectedMessage, err: errors.New("handshake data before ChangeCipherSpec")}
	}
	typ, frag, err := c.in.rr.next()
	if err != nil {
		return err
	}
	switch {
	case typ == recordAlert && len(frag) == 2:
		return &alertError{desc: frag[1], received: true}
	case typ != recordChangeCipherSpec:
		return &alertError{desc: alertUnexpectedMessage, err: fmt.Errorf("record type %d, want ChangeCipherSpec", typ)}
	case len(frag) != 1 || frag[0] != 1:
		return &alertError{desc: alertDecodeError, err: errors.New("malformed ChangeCipherSpec")}
	}
	c.in.rr.in = cs
	return nil
}

// queueHandshake appends handshake messages to the pending flight.
func (hs *handshakeState) queueHandshake(msgs []byte) error {
	c := hs.c
	c.out.buf = appendRecords(c.out.buf, c.out.cs, recordHandshake, msgs)
	return nil
}

// queueCCS appends ChangeCipherSpec and switches writing to cs.
func (c *Conn) queueCCS(cs *cipherState) {
	c.out.buf = appendRecords(c.out.buf, c.out.cs, recordChangeCipherSpec, []byte{1})
	c.out.cs = cs
}

// flush writes the pending flight in one write.
func (c *Conn) flush() error {
	_, err := c.conn.Write(c.out.buf)
	c.out.buf = c.out.buf[:0]
	if err != nil {
		c.out.err = err
	}
	return err
}
