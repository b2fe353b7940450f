package tls12

import (
	"errors"
	"testing"
)

func TestParseClientHelloRejects(t *testing.T) {
	many := make([]byte, 0, 4*70)
	for i := range 70 {
		many = append(many, 0x10, byte(i), 0, 0) // 70 distinct empty extensions
	}
	for name, ext := range map[string][]byte{
		"duplicate extension":  {0, 23, 0, 0, 0, 23, 0, 0},
		"too many extensions":  many,
		"trailing dot in SNI":  {0, 0, 0, 9, 0, 7, 0, 0, 4, 'a', '.', 'b', '.'},
		"empty ALPN name":      {0, 16, 0, 3, 0, 1, 0},
		"odd supported_groups": {0, 10, 0, 3, 0, 1, 0},
	} {
		tc := newTestClient(nil)
		tc.noEMS, tc.extraExt = true, ext
		if _, err := ParseClientHello(tc.helloMessage()); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	tc := newTestClient(nil)
	tc.sni = "Upper.Example.Test"
	h, err := ParseClientHello(tc.helloMessage())
	if err != nil || h.ServerName != "upper.example.test" {
		t.Fatalf("%q %v", h.ServerName, err)
	}
}
