package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/internal/routing"
)

// The limit annotations: valid sets become one RequestLimit named for the
// Ingress; each invalid value is an error naming its annotation (an Event
// and a status condition) and leaves its field at the default; options
// without a limit are reported and ignored.
func TestParseLimitAnnotations(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		name string
		in   map[string]string
		want *routing.RequestLimit
		errs []string // substrings, one per error, in order
	}{
		{"none", map[string]string{}, nil, nil},
		{"rps with ingress-nginx's default burst", map[string]string{AnnotationLimitRPS: "300"},
			&routing.RequestLimit{Name: "ns/ing", RPS: 300, BurstMultiplier: DefaultBurstMultiplier}, nil},
		{"every option", map[string]string{AnnotationLimitRPS: "10", AnnotationLimitRPM: "100", AnnotationLimitBurst: "1",
			AnnotationLimitConns: "4", AnnotationLimitKey: "header:x-api-key",
			AnnotationLimitAllowlist: "10.0.0.0/8, 192.0.2.7,2001:db8::1/64, ::ffff:198.51.100.0/120"},
			&routing.RequestLimit{Name: "ns/ing", RPS: 10, RPM: 100, BurstMultiplier: 1, Connections: 4, Header: "X-Api-Key",
				Allow: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.7/32"), pfx("2001:db8::/64"), pfx("198.51.100.0/24")}}, nil},
		{"connections alone", map[string]string{AnnotationLimitConns: "2", AnnotationLimitKey: "client-address"},
			&routing.RequestLimit{Name: "ns/ing", Connections: 2, BurstMultiplier: DefaultBurstMultiplier}, nil},
		{"bad values keep defaults", map[string]string{AnnotationLimitRPS: "0", AnnotationLimitRPM: "12.5",
			AnnotationLimitConns: "5", AnnotationLimitBurst: "61", AnnotationLimitKey: "cookie:x",
			AnnotationLimitAllowlist: "10.0.0.0/33"},
			&routing.RequestLimit{Name: "ns/ing", Connections: 5, BurstMultiplier: DefaultBurstMultiplier},
			[]string{"limit-allowlist", "limit-burst-multiplier", "limit-key", "limit-rpm", "limit-rps"}},
		{"options without a limit", map[string]string{AnnotationLimitBurst: "2", AnnotationLimitAllowlist: "10.0.0.1"},
			nil, []string{"limit-allowlist: ignored without", "limit-burst-multiplier: ignored without"}},
		{"a bad rate leaves no limit", map[string]string{AnnotationLimitRPS: "-3"}, nil, []string{"limit-rps"}},
		{"empty header name", map[string]string{AnnotationLimitRPS: "1", AnnotationLimitKey: "header:"},
			&routing.RequestLimit{Name: "ns/ing", RPS: 1, BurstMultiplier: DefaultBurstMultiplier}, []string{"limit-key"}},
		{"zoned address", map[string]string{AnnotationLimitRPS: "1", AnnotationLimitAllowlist: "fe80::1%eth0"},
			&routing.RequestLimit{Name: "ns/ing", RPS: 1, BurstMultiplier: DefaultBurstMultiplier}, []string{"limit-allowlist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, errs := parseAnnotations(tc.in)
			got := a.limitOf("ns", "ing")
			if (got == nil) != (tc.want == nil) || got != nil && !sameLimit(*got, *tc.want) {
				t.Errorf("limit %+v, want %+v", got, tc.want)
			}
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %d", errs, len(tc.errs))
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tc.errs[i]) {
					t.Errorf("error %d %q lacks %q", i, e, tc.errs[i])
				}
			}
		})
	}
}

func sameLimit(a, b routing.RequestLimit) bool {
	return a.Name == b.Name && a.RPS == b.RPS && a.RPM == b.RPM && a.BurstMultiplier == b.BurstMultiplier &&
		a.Connections == b.Connections && a.Header == b.Header && slices.Equal(a.Allow, b.Allow)
}

// Every route of a limited Ingress carries its one limit; other Ingresses'
// routes to the same Service carry none; an invalid limit annotation is
// an InvalidAnnotation problem and the Ingress is still served.
func TestBuildLimits(t *testing.T) {
	runBuildCases(t, []buildCase{{
		name: "limits per ingress",
		objs: with(echo(),
			ingress("default", "a", annotate(AnnotationLimitRPS, "300"), annotate(AnnotationLimitAllowlist, "10.0.0.0/8"),
				rule("x.com", pathSpec{prefixT, "/a", "echo", 80}, pathSpec{prefixT, "/a2", "echo", 80}),
				rule("y.com", pathSpec{prefixT, "/", "echo", 80})),
			ingress("default", "b", annotate(AnnotationLimitRPM, "soon"), rule("x.com", pathSpec{prefixT, "/b", "echo", 80}))),
		want: []string{`vhost "x.com"`,
			"  ^/a2 -> " + echoBE + ` (default/a) limit=default/a:rps=300,rpm=0,burst=5,conns=0,key="",allow=[10.0.0.0/8]`,
			"  ^/a -> " + echoBE + ` (default/a) limit=default/a:rps=300,rpm=0,burst=5,conns=0,key="",allow=[10.0.0.0/8]`,
			"  ^/b -> " + echoBE + " (default/b)",
			`vhost "y.com"`,
			"  ^/ -> " + echoBE + ` (default/a) limit=default/a:rps=300,rpm=0,burst=5,conns=0,key="",allow=[10.0.0.0/8]`},
		problems: []string{
			"Ingress default/b: InvalidAnnotation: annotation meshgate.io/limit-rpm=\"soon\"",
		},
	}})
}

// FuzzParseLimitAnnotations checks that no value panics and that an
// accepted limit is within its documented bounds.
func FuzzParseLimitAnnotations(f *testing.F) {
	for _, s := range []string{"", "1", "300", "60", "61", "0", "-1", "4294967296", "header:X-Api-Key", "header:",
		"client-address", "10.0.0.0/8,192.0.2.1", "::ffff:10.0.0.0/104", "fe80::1%eth0", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m := map[string]string{AnnotationLimitRPS: v, AnnotationLimitRPM: v, AnnotationLimitBurst: v,
			AnnotationLimitConns: v, AnnotationLimitKey: v, AnnotationLimitAllowlist: v}
		a, errs := parseAnnotations(m)
		if len(errs) > len(m) {
			t.Fatalf("%d errors for %d annotations", len(errs), len(m))
		}
		l := a.limitOf("ns", "ing")
		if l == nil {
			return
		}
		if l.RPS > MaxLimitRPS || l.RPM > MaxLimitRPM || l.Connections > MaxLimitRPS ||
			l.BurstMultiplier < 1 || l.BurstMultiplier > MaxBurstMultiplier || len(l.Allow) > maxAllowlist {
			t.Fatalf("out of bounds: %+v", l)
		}
		for _, p := range l.Allow {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("allowlist entry %v", p)
			}
		}
		if l.Header != "" && strings.IndexFunc(l.Header, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
			t.Fatalf("header %q", l.Header)
		}
		_ = fmt.Sprint(l)
	})
}
