package translate

import (
	"crypto/tls"
	"testing"
	"time"

	"github.com/meshgate/meshgate/api/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func withSecrets(base func(testing.TB) []metav1.Object, secrets ...[3]string) func(testing.TB) []metav1.Object {
	return func(t testing.TB) []metav1.Object {
		out := base(t)
		for _, s := range secrets {
			out = append(out, tlsSecret(t, s[0], s[1], s[2]))
		}
		return out
	}
}

func TestBuildTLS(t *testing.T) {
	echoRule := func(host string) ingOpt { return rule(host, pathSpec{prefixT, "/", "echo", 80}) }
	badSecret := &corev1.Secret{ObjectMeta: meta("default", "bad"), Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: []byte("nope"), corev1.TLSPrivateKeyKey: []byte("nope")}}
	opaque := &corev1.Secret{ObjectMeta: meta("default", "opaque"), Type: corev1.SecretTypeOpaque}
	runBuildCases(t, []buildCase{{
		name: "tls host, redirect, first cert is default",
		objs: withSecrets(with(echo(), ingress("default", "a", echoRule("a.com"), tlsFor("a-tls", "A.com"))),
			[3]string{"default", "a-tls", "a.com"}),
		want: []string{
			`tls "<default>" cert=a.com policy=""`,
			`tls "a.com" cert=a.com policy=""`,
			`vhost "a.com" tls redirect`, "  ^/ -> " + echoBE + " (default/a)",
		},
	}, {
		name: "ssl-redirect false, wildcard tls covers host",
		objs: withSecrets(with(echo(), ingress("default", "a", annotate(AnnotationSSLRedirect, "false"),
			echoRule("www.a.com"), tlsFor("w", "*.a.com"))),
			[3]string{"default", "w", "*.a.com"}),
		want: []string{
			`tls "*.a.com" cert=*.a.com policy=""`,
			`tls "<default>" cert=*.a.com policy=""`,
			`vhost "www.a.com" tls`, "  ^/ -> " + echoBE + " (default/a)",
		},
	}, {
		name: "missing, invalid and non-TLS secrets skip their hosts",
		objs: with(echo(), badSecret, opaque, ingress("default", "a", echoRule("a.com"),
			tlsFor("missing", "a.com"), tlsFor("bad", "b.com"), tlsFor("opaque", "c.com"))),
		want: []string{`vhost "a.com"`, "  ^/ -> " + echoBE + " (default/a)"},
		problems: []string{
			"Ingress default/a: InvalidCertificate: spec.tls[1]",
			"Ingress default/a: InvalidCertificate: spec.tls[2]",
			"Ingress default/a: SecretNotFound: spec.tls[0]",
		},
	}, {
		name: "explicit default certificate; conflicting secret for a host",
		opts: Options{DefaultCertificate: "meshgate/fallback"},
		objs: withSecrets(with(echo(),
			ingress("default", "old", age(1), tlsFor("one", "x.com")),
			ingress("default", "new", age(2), tlsFor("two", "x.com", "y.com"))),
			[3]string{"default", "one", "one"}, [3]string{"default", "two", "two"}, [3]string{"meshgate", "fallback", "fallback"}),
		want: []string{
			`tls "<default>" cert=fallback policy=""`,
			`tls "x.com" cert=one policy=""`,
			`tls "y.com" cert=two policy=""`,
		},
		problems: []string{`Ingress default/new: Conflict: spec.tls[0]: host "x.com" already uses secret "default/one"`},
	}, {
		name: "bad default certificate falls back; secretless tls uses default",
		opts: Options{DefaultCertificate: "meshgate/missing"},
		objs: withSecrets(with(echo(),
			ingress("default", "a", age(1), tlsFor("", "nosecret.com")),
			ingress("default", "b", age(2), tlsFor("s", "s.com"))),
			[3]string{"default", "s", "s"}),
		want: []string{
			`tls "<default>" cert=s policy=""`,
			`tls "nosecret.com" cert=s policy=""`,
			`tls "s.com" cert=s policy=""`,
		},
		problems: []string{"Secret meshgate/missing: SecretNotFound: default certificate"},
	}, {
		name:     "secretless tls without any default",
		objs:     with(echo(), ingress("default", "a", tlsFor("", "nosecret.com"))),
		problems: []string{`Ingress default/a: SecretNotFound: TLS host "nosecret.com"`},
	}, {
		name: "ssl passthrough",
		objs: withSecrets(with(echo(),
			ingress("default", "pt", age(1), annotate(AnnotationSSLPassthrough, "true"),
				echoRule("db.com"), rule("*.db.com", pathSpec{prefixT, "/", "echo", 80}, pathSpec{prefixT, "/x", "echo", 80}),
				rule("nopath.com"), tlsFor("s", "db.com")),
			ingress("default", "pt2", age(2), annotate(AnnotationSSLPassthrough, "true"), echoRule("db.com"), echoRule("")),
			ingress("default", "pt3", age(3), annotate(AnnotationSSLPassthrough, "true"), defaultBackend("echo", "http"), rule("dflt.com"))),
			[3]string{"default", "s", "s"}),
		want: []string{
			`passthrough "*.db.com" -> ` + echoBE,
			`passthrough "db.com" -> ` + echoBE,
			`passthrough "dflt.com" -> default/echo:http [10.0.0.1:9000]`,
		},
		problems: []string{
			"Ingress default/pt: InvalidRule: spec.rules[2]: no backend",
			"Ingress default/pt: Unsupported: spec.rules[1]: SSL passthrough cannot route by path",
			"Ingress default/pt2: Conflict: spec.rules[0]",
			"Ingress default/pt2: InvalidRule: spec.rules[1]: SSL passthrough routes by SNI",
		},
	}})
}

func TestBuildTLSPolicies(t *testing.T) {
	strict := policy("default", "strict", v1alpha1.TLSPolicySpec{MinVersion: "1.3", Hosts: []string{"Strict.com"}})
	wild := policy("default", "wild", v1alpha1.TLSPolicySpec{Hosts: []string{"*.w.com"}})
	sel := policy("default", "sel", v1alpha1.TLSPolicySpec{IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "gold"}}})
	broken := policy("default", "broken", v1alpha1.TLSPolicySpec{MinVersion: "1.1", Hosts: []string{"broken.com"}})
	otherNS := policy("other", "strict", v1alpha1.TLSPolicySpec{Hosts: []string{"other.com"}})
	secret := [3]string{"default", "s", "s"}
	runBuildCases(t, []buildCase{{
		name: "selection order",
		objs: withSecrets(with(echo(), strict, wild, sel, broken, otherNS,
			ingress("default", "hosts", age(1), tlsFor("s", "strict.com", "a.w.com", "w.com", "broken.com", "other.com")),
			ingress("default", "annotated", age(2), annotate(AnnotationTLSPolicy, "sel"), label("tier", "x"), tlsFor("s", "ann.com")),
			ingress("default", "selected", age(3), label("tier", "gold"), tlsFor("s", "gold.com")),
			ingress("default", "annotation-missing", age(4), annotate(AnnotationTLSPolicy, "nope"), tlsFor("s", "strict2.com")),
			ingress("default", "annotation-broken", age(5), annotate(AnnotationTLSPolicy, "broken"), tlsFor("s", "b2.com")),
		), secret),
		want: []string{
			`tls "<default>" cert=s policy=""`,
			`tls "a.w.com" cert=s policy="default/wild"`,
			`tls "ann.com" cert=s policy="default/sel"`,
			`tls "b2.com" cert=s policy=""`,
			`tls "broken.com" cert=s policy=""`,
			`tls "gold.com" cert=s policy="default/sel"`,
			`tls "other.com" cert=s policy=""`,
			`tls "strict.com" cert=s policy="default/strict"`,
			`tls "strict2.com" cert=s policy=""`,
			`tls "w.com" cert=s policy=""`,
		},
		problems: []string{
			"Ingress default/annotation-broken: InvalidPolicy",
			"Ingress default/annotation-missing: PolicyNotFound",
			"TLSPolicy default/broken: InvalidPolicy: spec.minVersion",
		},
	}, {
		name: "same host, different policy: oldest wins",
		objs: withSecrets(with(echo(), sel,
			ingress("default", "a", age(1), tlsFor("s", "x.com")),
			ingress("default", "b", age(2), annotate(AnnotationTLSPolicy, "sel"), tlsFor("s", "x.com"))), secret),
		want: []string{
			`tls "<default>" cert=s policy=""`,
			`tls "x.com" cert=s policy=""`,
		},
		problems: []string{`Ingress default/b: Conflict: spec.tls[0]: host "x.com" already uses TLS policy ""`},
	}})
}

func TestDefaultSessionMode(t *testing.T) {
	c := cacheOf(withSecrets(with(echo(), ingress("default", "a", tlsFor("s", "a.com"))), [3]string{"default", "s", "s"})(t)...)
	tbl, _ := ToTable(c, Options{DefaultSessionMode: "TicketKeys"})
	if m := tbl.TLS.Lookup("a.com").Policy.SessionMode; m != "TicketKeys" {
		t.Errorf("session mode = %q, want TicketKeys", m)
	}
	if m := tbl.TLS.Default.Policy.SessionMode; m != "TicketKeys" {
		t.Errorf("default session mode = %q, want TicketKeys", m)
	}
	if tbl.TLS.Default.Certificate.Leaf == nil {
		t.Error("Leaf not set")
	}
}

func TestConvertTLSPolicy(t *testing.T) {
	d := func(s string) *metav1.Duration { v, _ := time.ParseDuration(s); return &metav1.Duration{Duration: v} }
	cases := []struct {
		name string
		spec v1alpha1.TLSPolicySpec
		err  string
		chk  func(t *testing.T, p *tlsPolicy)
	}{
		{name: "defaults", chk: func(t *testing.T, p *tlsPolicy) {
			if p.MinVersion != tls.VersionTLS12 || p.MaxVersion != tls.VersionTLS13 || p.SessionMode != "Stateful" ||
				p.SessionLifetime != 300*time.Second || p.CipherSuites != nil || p.Name != "ns/p" || p.Generation != 3 {
				t.Errorf("defaults: %+v", p)
			}
		}},
		{name: "full", spec: v1alpha1.TLSPolicySpec{
			MinVersion: "1.2", MaxVersion: "1.2",
			CipherSuites:      []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
			Curves:            []string{"X25519MLKEM768", "X25519", "P-256", "P-384", "P-521"},
			SessionResumption: v1alpha1.SessionResumption{Mode: "TicketKeys", Lifetime: d("10m"), TicketKeyRotation: d("30m")},
			EarlyData:         true,
		}, chk: func(t *testing.T, p *tlsPolicy) {
			if p.MaxVersion != tls.VersionTLS12 || len(p.CipherSuites) != 2 || p.CipherSuites[0] != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 ||
				len(p.CurvePreferences) != 5 || p.CurvePreferences[0] != tls.X25519MLKEM768 || p.SessionMode != "TicketKeys" ||
				p.SessionLifetime != 10*time.Minute || p.TicketKeyRotation != 30*time.Minute || !p.Allow0RTT {
				t.Errorf("full: %+v", p)
			}
		}},
		{name: "off", spec: v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Mode: "Off"}}, chk: func(t *testing.T, p *tlsPolicy) {
			if p.SessionMode != "Off" {
				t.Errorf("mode %q", p.SessionMode)
			}
		}},
		{name: "bad min", spec: v1alpha1.TLSPolicySpec{MinVersion: "1.0"}, err: "spec.minVersion"},
		{name: "bad max", spec: v1alpha1.TLSPolicySpec{MaxVersion: "2"}, err: "spec.maxVersion"},
		{name: "min above max", spec: v1alpha1.TLSPolicySpec{MinVersion: "1.3", MaxVersion: "1.2"}, err: "above"},
		{name: "unknown cipher", spec: v1alpha1.TLSPolicySpec{CipherSuites: []string{"TLS_NOPE"}}, err: "unknown or insecure"},
		{name: "insecure cipher", spec: v1alpha1.TLSPolicySpec{CipherSuites: []string{"TLS_RSA_WITH_RC4_128_SHA"}}, err: "insecure"},
		{name: "tls13 cipher", spec: v1alpha1.TLSPolicySpec{CipherSuites: []string{"TLS_AES_128_GCM_SHA256"}}, err: "TLS 1.3 suite"},
		{name: "bad curve", spec: v1alpha1.TLSPolicySpec{Curves: []string{"P-224"}}, err: "unknown curve"},
		{name: "bad mode", spec: v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Mode: "Sticky"}}, err: "unknown mode"},
		{name: "bad lifetime", spec: v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{Lifetime: d("0s")}}, err: "lifetime"},
		{name: "bad rotation", spec: v1alpha1.TLSPolicySpec{SessionResumption: v1alpha1.SessionResumption{TicketKeyRotation: d("1s")}}, err: "ticketKeyRotation"},
	}
	for _, tc := range cases {
		p := policy("ns", "p", tc.spec)
		p.Generation = 3
		got, err := ConvertTLSPolicy(p)
		if tc.err != "" {
			if err == nil || !contains(err.Error(), tc.err) {
				t.Errorf("%s: err = %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		tc.chk(t, got)
	}
}
