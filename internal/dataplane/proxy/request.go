package proxy

import (
	"math/rand/v2"
	"unsafe"
)

// randUint32 is the random number weighted backend choices use.
func randUint32() uint32 { return rand.Uint32() }

// unsafeBytes views s as bytes for a Write, which must not modify them.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
