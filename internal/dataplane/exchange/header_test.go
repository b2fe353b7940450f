package exchange

import (
	"slices"
	"testing"
)

func fields(h *Header) []string {
	var out []string
	for _, f := range h.Fields() {
		out = append(out, f.Name+"="+f.Value)
	}
	return out
}

func TestHeader(t *testing.T) {
	var h Header
	h.Add("Accept", "a")
	h.Add("X-Dup", "1")
	h.Add("Cookie", "c")
	h.Add("x-dup", "2")
	if v, ok := h.Get("X-DUP"); !ok || v != "1" {
		t.Fatalf("Get = %q %v, want first value", v, ok)
	}
	if n := h.Count("x-Dup"); n != 2 {
		t.Fatalf("Count = %d", n)
	}
	h.Set("X-Dup", "3")
	if got := fields(&h); !slices.Equal(got, []string{"Accept=a", "X-Dup=3", "Cookie=c"}) {
		t.Fatalf("after Set: %v (Set must keep the first position and drop the rest)", got)
	}
	h.Set("New", "n")
	if !h.Del("accept") || h.Del("accept") {
		t.Fatal("Del must report the first removal only")
	}
	h.DelFunc(func(f Field) bool { return f.Name == "Cookie" })
	if got := fields(&h); !slices.Equal(got, []string{"X-Dup=3", "New=n"}) {
		t.Fatalf("after Del/DelFunc: %v", got)
	}
	var c Header
	c.CopyFrom(&h)
	h.Reset()
	if h.Len() != 0 || c.Len() != 2 || c.Value("new") != "n" {
		t.Fatalf("CopyFrom must not share storage: %v / %v", fields(&h), fields(&c))
	}
}

func TestTokens(t *testing.T) {
	for _, tc := range []struct {
		v, tok string
		want   bool
	}{
		{"keep-alive, Upgrade", "upgrade", true},
		{" close ", "close", true},
		{"closed", "close", false},
		{"a,,\tb", "b", true},
		{"", "x", false},
	} {
		if got := HasToken(tc.v, tc.tok); got != tc.want {
			t.Errorf("HasToken(%q, %q) = %v", tc.v, tc.tok, got)
		}
	}
	var got []string
	Tokens(" a , ,b,c ", func(s string) bool { got = append(got, s); return s != "b" })
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Tokens = %v (empty elements skipped, stop on false)", got)
	}
	if !EqualFold("Content-Length", "content-LENGTH") || EqualFold("a", "b") || EqualFold("ab", "a") {
		t.Fatal("EqualFold")
	}
}

func TestHeaderAllocs(t *testing.T) {
	var h Header
	for i := 0; i < 8; i++ {
		h.Add("X", "v")
	}
	if n := testing.AllocsPerRun(100, func() {
		h.Reset()
		h.Add("Host", "a")
		h.Add("X-Forwarded-For", "b")
		h.Set("X-Forwarded-For", "c")
		h.Del("Host")
		_, _ = h.Get("x-forwarded-for")
	}); n != 0 {
		t.Fatalf("%v allocations reusing a Header, want 0", n)
	}
}
