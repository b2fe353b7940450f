package tls12

import (
	"encoding/binary"
	"time"
)

// Session state layout, as handed to SessionCache.Put (secret; never
// logged):
//
//	[0]     stateVersion
//	[1:3]   cipher suite
//	[3:11]  creation time, unix seconds
//	[11:59] master secret (always an extended master secret: no other
//	        session is ever stored)
const (
	stateVersion = 1
	stateLen     = 11 + masterSecretLen
)

type sessionState struct {
	suite        *suite
	created      time.Time
	masterSecret []byte
}

func newSessionState(s *suite, ms []byte, now time.Time) []byte {
	b := make([]byte, stateLen)
	b[0] = stateVersion
	binary.BigEndian.PutUint16(b[1:3], s.id)
	binary.BigEndian.PutUint64(b[3:11], uint64(now.Unix()))
	copy(b[11:], ms)
	return b
}

func parseSessionState(b []byte) (*sessionState, bool) {
	if len(b) != stateLen || b[0] != stateVersion {
		return nil, false
	}
	s := suiteByID(binary.BigEndian.Uint16(b[1:3]))
	if s == nil {
		return nil, false
	}
	return &sessionState{
		suite:        s,
		created:      time.Unix(int64(binary.BigEndian.Uint64(b[3:11])), 0),
		masterSecret: b[11:],
	}, true
}
