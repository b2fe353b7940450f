package main

import (
	"net"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// suiteCorefile is the Gateway API conformance suite's (base manifests).
const suiteCorefile = `.:53 {
    forward . 8.8.8.8 9.9.9.9
    log
    errors
}
foo.bar.com:53 {
  whoami
}
`

func TestParseCorefile(t *testing.T) {
	ss, err := parseCorefile(suiteCorefile)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].whoami || !ss[1].whoami || ss[1].zones[0] != "foo.bar.com." || ss[1].port != 53 {
		t.Fatalf("parsed %+v", ss)
	}
	nested, err := parseCorefile("dns://Example.org:1053 other.org:1053 { # comment\n kubernetes { fallthrough }\n whoami\n}\n")
	if err != nil || len(nested) != 1 || nested[0].port != 1053 || !nested[0].whoami || nested[0].zones[0] != "example.org." {
		t.Fatalf("nested block: %+v, %v", nested, err)
	}
	for _, bad := range []string{"{ whoami }", "a.org {", "a.org { } }", "a.org:99999 { }", "a.org:53 b.org:54 { }", "a.org"} {
		if _, err := parseCorefile(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseCorefile(f *testing.F) {
	f.Add(suiteCorefile)
	f.Add("a:1 { b { c } }")
	f.Fuzz(func(t *testing.T, text string) {
		ss, err := parseCorefile(text)
		if err != nil {
			return
		}
		for _, s := range ss {
			if s.port <= 0 || s.port > 65535 || len(s.zones) == 0 {
				t.Fatalf("%q parsed as %+v", text, s)
			}
			for _, z := range s.zones {
				if !strings.HasSuffix(z, ".") {
					t.Fatalf("zone %q not fully qualified", z)
				}
			}
		}
	})
}

func TestAnswer(t *testing.T) {
	ss, _ := parseCorefile(suiteCorefile)
	query := func(name string) []byte {
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 42, RecursionDesired: true})
		_ = b.StartQuestions()
		_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
		m, _ := b.Finish()
		return m
	}
	resp, err := answer(query("foo.bar.com."), ss, net.ParseIP("198.18.128.1"), 4242, "udp")
	if err != nil {
		t.Fatal(err)
	}
	var m dnsmessage.Message
	if err := m.Unpack(resp); err != nil {
		t.Fatal(err)
	}
	if m.ID != 42 || m.RCode != dnsmessage.RCodeSuccess || !m.Authoritative || len(m.Answers) != 0 || len(m.Additionals) != 2 {
		t.Fatalf("whoami reply %+v", m)
	}
	a, ok := m.Additionals[0].Body.(*dnsmessage.AResource)
	srv, ok2 := m.Additionals[1].Body.(*dnsmessage.SRVResource)
	if !ok || !ok2 || net.IP(a.A[:]).String() != "198.18.128.1" || srv.Port != 4242 || m.Additionals[1].Header.Name.String() != "_udp.foo.bar.com." {
		t.Fatalf("whoami additionals %+v", m.Additionals)
	}
	resp, err = answer(query("example.com."), ss, net.ParseIP("198.18.128.1"), 4242, "udp")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Unpack(resp); err != nil || m.RCode != dnsmessage.RCodeRefused {
		t.Fatalf("outside the whoami zone: %+v, %v", m.Header, err)
	}
	if _, err := answer([]byte{1, 2, 3}, ss, net.ParseIP("198.18.128.1"), 1, "udp"); err == nil {
		t.Fatal("garbage answered")
	}
}
