package translate

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// echo is the usual backend: Service default/echo port 80 (name http) →
// 9000, one ready endpoint.
func echo() []metav1.Object {
	return []metav1.Object{
		ourClass(true),
		service("default", "echo", "http=80>9000"),
		slice("default", "echo-1", "echo", "http", 9000, ready("10.0.0.1")),
	}
}

const echoBE = "default/echo:80 [10.0.0.1:9000]"

type buildCase struct {
	name     string
	objs     func(t testing.TB) []metav1.Object
	opts     Options
	want     []string
	problems []string // prefixes of Problem.String(), in order
}

func objs(o ...metav1.Object) func(testing.TB) []metav1.Object {
	return func(testing.TB) []metav1.Object { return o }
}

func with(base []metav1.Object, o ...metav1.Object) func(testing.TB) []metav1.Object {
	return objs(append(base, o...)...)
}

func runBuildCases(t *testing.T, cases []buildCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := cacheOf(tc.objs(t)...)
			opts := tc.opts
			opts.Now = epoch
			tbl, probs := ToTable(c, opts)
			got := dump(tbl)
			if !reflect.DeepEqual(got, nonNil(tc.want)) {
				t.Errorf("table:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			ps := problemStrings(probs)
			ok := len(ps) == len(tc.problems)
			for i := 0; ok && i < len(ps); i++ {
				ok = strings.HasPrefix(ps[i], tc.problems[i])
			}
			if !ok {
				t.Errorf("problems:\n%s\nwant prefixes:\n%s", strings.Join(ps, "\n"), strings.Join(tc.problems, "\n"))
			}
			// Deterministic: a second build from the same cache is equal.
			tbl2, probs2 := ToTable(c, opts)
			if !reflect.DeepEqual(tbl, tbl2) || !reflect.DeepEqual(probs, probs2) {
				t.Error("second Build differs from the first")
			}
		})
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string(nil)
	}
	return s
}

func TestBuildRules(t *testing.T) {
	runBuildCases(t, []buildCase{{
		name: "empty",
		objs: objs(),
	}, {
		name: "one host, prefix root",
		objs: with(echo(), ingress("default", "echo", rule("Echo.Example.com", pathSpec{prefixT, "/", "echo", 80}))),
		want: []string{`vhost "echo.example.com"`, "  ^/ -> " + echoBE + " (default/echo)"},
	}, {
		name: "port by name, catch-all, implementation specific",
		objs: with(echo(), ingress("default", "a", rule("", pathSpec{implT, "", "echo", "http"}))),
		want: []string{`vhost ""`, "  ~/ -> default/echo:http [10.0.0.1:9000] (default/a)"},
	}, {
		name: "wildcard host and route order",
		objs: with(echo(), ingress("default", "a", rule("*.example.com",
			pathSpec{prefixT, "/", "echo", 80},
			pathSpec{prefixT, "/api/", "echo", 80},
			pathSpec{exactT, "/api", "echo", 80},
		))),
		want: []string{`vhost "*.example.com"`,
			"  =/api -> " + echoBE + " (default/a)",
			"  ^/api/ -> " + echoBE + " (default/a)",
			"  ^/ -> " + echoBE + " (default/a)"},
	}, {
		name: "rules merged across ingresses",
		objs: with(echo(),
			ingress("default", "b", rule("x.com", pathSpec{prefixT, "/b", "echo", 80})),
			ingress("default", "a", rule("x.com", pathSpec{prefixT, "/a", "echo", 80}))),
		want: []string{`vhost "x.com"`, "  ^/a -> " + echoBE + " (default/a)", "  ^/b -> " + echoBE + " (default/b)"},
	}, {
		name: "conflict: oldest wins",
		objs: with(echo(),
			ingress("default", "young", age(5), rule("x.com", pathSpec{prefixT, "/p/", "echo", 80})),
			ingress("default", "old", age(1), rule("x.com", pathSpec{prefixT, "/p", "echo", 80}))),
		want:     []string{`vhost "x.com"`, "  ^/p -> " + echoBE + " (default/old)"},
		problems: []string{"Ingress default/young: Conflict: spec.rules[0].http.paths[0]: host \"x.com\" path \"/p/\" is already routed by Ingress default/old"},
	}, {
		name: "conflict: same age, name decides; exact and prefix do not conflict",
		objs: with(echo(),
			ingress("default", "b", rule("x.com", pathSpec{prefixT, "/p", "echo", 80})),
			ingress("default", "a", rule("x.com", pathSpec{prefixT, "/p", "echo", 80}, pathSpec{exactT, "/p", "echo", 80}))),
		want: []string{`vhost "x.com"`,
			"  =/p -> " + echoBE + " (default/a)",
			"  ^/p -> " + echoBE + " (default/a)"},
		problems: []string{"Ingress default/b: Conflict"},
	}, {
		name: "invalid paths and hosts skipped",
		objs: with(echo(), ingress("default", "a",
			rule("x.com", pathSpec{nil, "/nopt", "echo", 80}, pathSpec{prefixT, "rel", "echo", 80}, pathSpec{prefixT, "/ok", "echo", 80}),
			rule("bad_host!", pathSpec{prefixT, "/", "echo", 80}),
			rule("a.*.com", pathSpec{prefixT, "/", "echo", 80}))),
		want: []string{`vhost "x.com"`, "  ^/ok -> " + echoBE + " (default/a)"},
		problems: []string{
			"Ingress default/a: InvalidRule: spec.rules[0].http.paths[0]: pathType is required",
			"Ingress default/a: InvalidRule: spec.rules[0].http.paths[1]: path \"rel\" must start with /",
			"Ingress default/a: InvalidRule: spec.rules[1]: invalid host",
			"Ingress default/a: InvalidRule: spec.rules[2]: invalid host",
		},
	}, {
		name: "missing service and port answer 503",
		objs: with(echo(), ingress("default", "a", rule("x.com",
			pathSpec{prefixT, "/nosvc", "nope", 80},
			pathSpec{prefixT, "/noport", "echo", 81},
			pathSpec{prefixT, "/noname", "echo", "grpc"}))),
		want: []string{`vhost "x.com"`,
			"  ^/noname -> default/echo:grpc [] (default/a)",
			"  ^/noport -> default/echo:81 [] (default/a)",
			"  ^/nosvc -> default/nope:80 [] (default/a)"},
		problems: []string{
			"Ingress default/a: PortNotFound: spec.rules[0].http.paths[1]",
			"Ingress default/a: PortNotFound: spec.rules[0].http.paths[2]",
			"Ingress default/a: ServiceNotFound: spec.rules[0].http.paths[0]",
		},
	}, {
		name: "default backend: oldest wins",
		objs: with(echo(),
			ingress("default", "a", age(2), defaultBackend("echo", 80)),
			ingress("default", "b", age(1), defaultBackend("echo", "http"))),
		want:     []string{"default -> default/echo:http [10.0.0.1:9000]"},
		problems: []string{"Ingress default/a: Conflict: spec.defaultBackend"},
	}, {
		name: "resource backend unsupported",
		objs: func(testing.TB) []metav1.Object {
			ing := ingress("default", "a", defaultBackend("echo", 80))
			ing.Spec.DefaultBackend.Service = nil
			ing.Spec.DefaultBackend.Resource = nil
			return append(echo(), ing)
		},
		problems: []string{"Ingress default/a: InvalidRule: spec.defaultBackend: no service backend"},
	}})
}

func TestBuildMissingServiceRoute(t *testing.T) {
	c := cacheOf(append(echo(), ingress("default", "a", rule("x.com", pathSpec{prefixT, "/", "nope", 80})))...)
	tbl, _ := ToTable(c, Options{})
	b, _ := tbl.HTTP.Backend("x.com", "/")
	if b == nil || b.Name != "default/nope:80" {
		t.Fatalf("backend = %+v, want default/nope:80 without endpoints", b)
	}
	if len(b.Endpoints) != 0 {
		t.Fatalf("endpoints = %v, want none", b.Endpoints)
	}
}

func TestBuildEndpoints(t *testing.T) {
	notReady := epSpec{addr: "10.0.0.9", ready: ptr.To(false)}
	explicitReady := epSpec{addr: "10.0.0.3", ready: ptr.To(true)}
	ing := ingress("default", "a", rule("x.com", pathSpec{prefixT, "/", "svc", 80}))
	runBuildCases(t, []buildCase{{
		name: "ready filter, sort, dedupe, several slices",
		objs: objs(ourClass(true), ing, service("default", "svc", "web=80>8080"),
			slice("default", "svc-b", "svc", "web", 8080, ready("10.0.0.2"), notReady, ready("10.0.0.1")),
			slice("default", "svc-a", "svc", "web", 8080, explicitReady, ready("10.0.0.2")),
			slice("default", "other", "other", "web", 8080, ready("10.9.9.9")),
			slice("default", "svc-wrongport", "svc", "metrics", 9090, ready("10.0.0.7"))),
		want: []string{`vhost "x.com"`, "  ^/ -> default/svc:80 [10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080] (default/a)"},
	}, {
		name: "ipv6 bracketed",
		objs: objs(ourClass(true), ing, service("default", "svc", "80>8080"),
			slice("default", "svc-6", "svc", "", 8080, ready("fd00::1"))),
		want: []string{`vhost "x.com"`, "  ^/ -> default/svc:80 [[fd00::1]:8080] (default/a)"},
	}, {
		name: "no ready endpoints",
		objs: objs(ourClass(true), ing, service("default", "svc", "web=80>8080"),
			slice("default", "svc-1", "svc", "web", 8080, notReady)),
		want: []string{`vhost "x.com"`, "  ^/ -> default/svc:80 [] (default/a)"},
	}, {
		name: "slices in another namespace ignored",
		objs: objs(ourClass(true), ing, service("default", "svc", "web=80>8080"),
			slice("other", "svc-1", "svc", "web", 8080, ready("10.0.0.1"))),
		want: []string{`vhost "x.com"`, "  ^/ -> default/svc:80 [] (default/a)"},
	}})
}

func TestIsOurs(t *testing.T) {
	other := ourClass(false)
	other.Name, other.Spec.Controller = "nginx", "k8s.io/ingress-nginx"
	otherDefault := ourClass(true)
	otherDefault.Name, otherDefault.Spec.Controller = "nginx", "k8s.io/ingress-nginx"
	custom := ourClass(false)
	custom.Name = "internal"
	cases := []struct {
		name    string
		ing     ingOpt
		classes []*networkingv1.IngressClass
		want    bool
	}{
		{"class of ours", className(ptr.To("meshgate")), classes(ourClass(false)), true},
		{"class of ours by other name", className(ptr.To("internal")), classes(custom), true},
		{"class missing", className(ptr.To("meshgate")), nil, false},
		{"other controller", className(ptr.To("nginx")), classes(ourClass(true), other), false},
		{"annotation ours", combine(className(nil), annotate(LegacyClassAnnotation, "meshgate")), nil, true},
		{"annotation other", combine(className(nil), annotate(LegacyClassAnnotation, "nginx")), classes(ourClass(true)), false},
		{"no class, ours default", className(nil), classes(ourClass(true)), true},
		{"no class, ours not default", className(nil), classes(ourClass(false)), false},
		{"no class, other default", className(nil), classes(otherDefault, ourClass(false)), false},
		{"nil classes ignored", className(nil), classes(nil, ourClass(true)), true},
	}
	for _, tc := range cases {
		if got := IsOurs(ingress("default", "a", tc.ing), tc.classes, Options{}); got != tc.want {
			t.Errorf("%s: IsOurs = %v, want %v", tc.name, got, tc.want)
		}
	}
	// Options rename the class and controller.
	c := ourClass(false)
	c.Spec.Controller = "example.com/x"
	if !IsOurs(ingress("default", "a"), classes(c), Options{ControllerName: "example.com/x"}) {
		t.Error("custom controller name not honoured")
	}
	if !IsOurs(ingress("default", "a", className(nil), annotate(LegacyClassAnnotation, "edge")), nil, Options{IngressClass: "edge"}) {
		t.Error("custom class name not honoured")
	}
}

func combine(opts ...ingOpt) ingOpt {
	return func(i *networkingv1.Ingress) {
		for _, o := range opts {
			o(i)
		}
	}
}

func TestBuildSkipsOtherClasses(t *testing.T) {
	runBuildCases(t, []buildCase{{
		name: "not ours",
		objs: with(echo(), ingress("default", "a", className(ptr.To("nginx")), rule("x.com", pathSpec{prefixT, "/", "echo", 80}))),
	}})
}

func TestBuildAnnotations(t *testing.T) {
	runBuildCases(t, []buildCase{{
		name: "backend settings",
		objs: with(echo(), ingress("default", "a",
			annotate(AnnotationBackendProto, "h2c"),
			annotate(AnnotationConnectTimeout, "5"),
			annotate(AnnotationReadTimeout, "2m"),
			annotate(AnnotationBodySize, "8m"),
			rule("x.com", pathSpec{prefixT, "/", "echo", 80}))),
		want: []string{`vhost "x.com"`, "  ^/ -> " + echoBE + " proto=h2c timeouts=5s/2m0s body=8388608 (default/a)"},
	}, {
		name: "invalid values use defaults",
		objs: with(echo(), ingress("default", "a",
			annotate(AnnotationBackendProto, "smtp"),
			annotate(AnnotationBodySize, "-1"),
			annotate("meshgate.io/typo", "x"),
			rule("x.com", pathSpec{prefixT, "/", "echo", 80}))),
		want: []string{`vhost "x.com"`, "  ^/ -> " + echoBE + " (default/a)"},
		problems: []string{
			"Ingress default/a: InvalidAnnotation: annotation meshgate.io/backend-protocol=\"smtp\"",
			"Ingress default/a: InvalidAnnotation: annotation meshgate.io/proxy-body-size=\"-1\"",
			"Ingress default/a: InvalidAnnotation: annotation meshgate.io/typo=\"x\"",
		},
	}, {
		name: "cookie affinity makes its own backend",
		objs: with(echo(),
			ingress("default", "a", annotate(AnnotationAffinity, "cookie"), annotate(AnnotationCookieName, "route"),
				annotate(AnnotationCookieMaxAge, "60"), annotate(AnnotationCookieSameSite, "None"),
				rule("x.com", pathSpec{prefixT, "/a", "echo", 80})),
			ingress("default", "b", annotate(AnnotationAffinity, "cookie"), annotate(AnnotationCookieSecure, "maybe"),
				rule("x.com", pathSpec{prefixT, "/b", "echo", 80})),
			ingress("default", "c", rule("x.com", pathSpec{prefixT, "/c", "echo", 80})),
			ingress("default", "d", annotate(AnnotationAffinity, "learn"), annotate(AnnotationCookieName, "JSESSIONID"),
				annotate(AnnotationCookieMaxAge, "600"), rule("x.com", pathSpec{prefixT, "/d", "echo", 80})),
			ingress("default", "e", annotate(AnnotationAffinity, "learn"), rule("x.com", pathSpec{prefixT, "/e", "echo", 80}))),
		want: []string{`vhost "x.com"`,
			"  ^/a -> " + echoBE + " affinity=route/1m0s//None/false (default/a)",
			"  ^/b -> " + echoBE + " affinity=MESHGATE_AFFINITY/0s///false (default/b)",
			"  ^/c -> " + echoBE + " (default/c)",
			"  ^/d -> " + echoBE + " learn=JSESSIONID/10m0s (default/d)",
			"  ^/e -> " + echoBE + " (default/e)"},
		problems: []string{
			"Ingress default/b: InvalidAnnotation: annotation meshgate.io/session-cookie-secure=\"maybe\"",
			"Ingress default/e: InvalidAnnotation: annotation meshgate.io/affinity: learn needs meshgate.io/session-cookie-name",
		},
	}, {
		name: "two ingresses, one service, different settings",
		objs: with(echo(),
			ingress("default", "a", annotate(AnnotationBackendProto, "GRPC"), rule("x.com", pathSpec{prefixT, "/a", "echo", 80})),
			ingress("default", "b", rule("x.com", pathSpec{prefixT, "/b", "echo", 80}))),
		want: []string{`vhost "x.com"`, "  ^/a -> " + echoBE + " proto=grpc (default/a)", "  ^/b -> " + echoBE + " (default/b)"},
	}})
}

func TestBuildL4(t *testing.T) {
	base := []metav1.Object{
		service("default", "dns", "dns=53>5353", "53>5353"),
		slice("default", "dns-1", "dns", "dns", 5353, ready("10.0.0.5")),
	}
	runBuildCases(t, []buildCase{{
		name: "sorted entries, proxy flags, problems",
		opts: Options{L4ConfigMap: "meshgate/l4"},
		objs: with(base, configMap("meshgate", "l4", map[string]string{
			"udp.5353": "default/dns:53",
			"tcp.53":   "default/dns:dns:PROXY",
			"tcp.54":   "default/dns:dns:PROXYv1",
			"tcp.9":    "default/missing:9",
			"udp.1":    "default/dns:53:PROXYv1",
			"sctp.1":   "default/dns:53",
			"tcp.0":    "default/dns:53",
			"tcp.053":  "default/dns:53",
			"tcp.55":   "default/dns:dns:PROXYv2",
		}), configMap("meshgate", "unrelated", map[string]string{"tcp.1": "a/b:1"})),
		want: []string{
			"l4 TCP/53 -> default/dns:53 [10.0.0.5:5353] (meshgate/l4)",
			"l4 TCP/54 -> default/dns:dns [10.0.0.5:5353] proxy=v1 (meshgate/l4)",
			"l4 TCP/55 -> default/dns:dns [10.0.0.5:5353] proxy=v2 (meshgate/l4)",
			"l4 TCP/9 -> default/missing:9 [] (meshgate/l4)",
			"l4 UDP/5353 -> default/dns:53 [10.0.0.5:5353] (meshgate/l4)",
		},
		problems: []string{
			"ConfigMap meshgate/l4: Conflict: tcp.53: port already used by tcp.053",
			"ConfigMap meshgate/l4: InvalidL4Service: sctp.1",
			"ConfigMap meshgate/l4: InvalidL4Service: tcp.0",
			"ConfigMap meshgate/l4: InvalidL4Service: udp.1",
			"ConfigMap meshgate/l4: ServiceNotFound: tcp.9",
		},
	}, {
		name:     "configmap missing",
		opts:     Options{L4ConfigMap: "meshgate/l4"},
		objs:     objs(base...),
		problems: []string{"ConfigMap meshgate/l4: ConfigMapNotFound"},
	}})
}

func TestBuildDefaults(t *testing.T) {
	c := cacheOf()
	tbl, _ := ToTable(c, Options{Generation: 7, Now: epoch, DefaultSessionMode: routing.SessionOff})
	if tbl.Generation != 7 || !tbl.BuiltAt.Equal(epoch) {
		t.Errorf("generation/time = %d/%v", tbl.Generation, tbl.BuiltAt)
	}
	if tbl.HTTP.Hosts == nil || tbl.TLS.Exact == nil || tbl.Passthrough == nil {
		t.Error("maps must be non-nil")
	}
	tbl, _ = ToTable(c, Options{})
	if time.Since(tbl.BuiltAt) > time.Minute {
		t.Errorf("BuiltAt = %v, want now", tbl.BuiltAt)
	}
}

func classes(c ...*networkingv1.IngressClass) []*networkingv1.IngressClass { return c }
