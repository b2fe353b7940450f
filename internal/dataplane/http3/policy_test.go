package http3

import (
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

func TestTablePolicy(t *testing.T) {
	yes := &routing.TLSPolicy{Allow0RTT: true}
	no := routing.DefaultPolicy()
	var h routing.Holder
	allow, anyHost := TablePolicy(&h)
	if allow("a.example") || anyHost() {
		t.Fatal("no table must mean no 0-RTT")
	}
	h.Store(&routing.Table{TLS: routing.TLSHosts{
		Exact:     map[string]*routing.TLSHost{"a.example": {Policy: yes}, "b.example": {Policy: no}},
		Wildcards: map[string]*routing.TLSHost{"w.example": {Policy: yes}},
		Default:   &routing.TLSHost{Policy: no},
	}})
	cases := []struct {
		sni  string
		want bool
	}{
		{"a.example", true},
		{"A.Example", true},
		{"b.example", false},
		{"x.w.example", true},
		{"w.example", false},
		{"unknown.example", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := allow(tc.sni); got != tc.want {
			t.Errorf("allow(%q) = %v, want %v", tc.sni, got, tc.want)
		}
	}
	if !anyHost() {
		t.Fatal("any() = false with hosts allowing 0-RTT")
	}
	h.Store(&routing.Table{TLS: routing.TLSHosts{Default: &routing.TLSHost{Policy: no}}})
	if anyHost() {
		t.Fatal("any() not recomputed for a new table")
	}
}
