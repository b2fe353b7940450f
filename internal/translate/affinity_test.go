package translate

import (
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/routing"
)

// The affinity annotations: valid sets become one CookieAffinity; each
// invalid value is an error naming its annotation (an Event and a status
// condition on the Ingress) and leaves its field at the default; cookie
// options without affinity are reported and ignored.
func TestParseAffinityAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    map[string]string
		want  routing.CookieAffinity
		learn routing.LearnAffinity
		errs  []string // substrings, one per error, in order
	}{
		{"none", map[string]string{}, routing.CookieAffinity{}, routing.LearnAffinity{}, nil},
		{"defaults", map[string]string{AnnotationAffinity: "cookie"},
			routing.CookieAffinity{Name: DefaultAffinityCookie}, routing.LearnAffinity{}, nil},
		{"every option", map[string]string{AnnotationAffinity: "Cookie", AnnotationCookieName: "route",
			AnnotationCookieMaxAge: "172800", AnnotationCookiePath: "/app", AnnotationCookieSameSite: "strict",
			AnnotationCookieSecure: "true"},
			routing.CookieAffinity{Name: "route", MaxAge: 48 * time.Hour, Path: "/app", SameSite: "Strict", Secure: true},
			routing.LearnAffinity{}, nil},
		{"bad values keep defaults", map[string]string{AnnotationAffinity: "cookie", AnnotationCookieName: "a b",
			AnnotationCookieMaxAge: "-1", AnnotationCookiePath: "app;x", AnnotationCookieSameSite: "sometimes",
			AnnotationCookieSecure: "yes"},
			routing.CookieAffinity{Name: DefaultAffinityCookie}, routing.LearnAffinity{},
			[]string{"session-cookie-max-age", "session-cookie-name", "session-cookie-path", "session-cookie-samesite", "session-cookie-secure"}},
		{"options without affinity", map[string]string{AnnotationCookieName: "route"},
			routing.CookieAffinity{}, routing.LearnAffinity{}, []string{"ignored without"}},
		{"learn", map[string]string{AnnotationAffinity: "learn", AnnotationCookieName: "JSESSIONID"},
			routing.CookieAffinity{}, routing.LearnAffinity{Cookie: "JSESSIONID"}, nil},
		{"learn with a timeout", map[string]string{AnnotationAffinity: "LEARN", AnnotationCookieName: "sid",
			AnnotationCookieMaxAge: "1800"},
			routing.CookieAffinity{}, routing.LearnAffinity{Cookie: "sid", Timeout: 30 * time.Minute}, nil},
		{"learn ignores our cookie's attributes", map[string]string{AnnotationAffinity: "learn", AnnotationCookieName: "sid",
			AnnotationCookiePath: "/app", AnnotationCookieSecure: "true"},
			routing.CookieAffinity{}, routing.LearnAffinity{Cookie: "sid"},
			[]string{"session-cookie-path: ignored with", "session-cookie-secure: ignored with"}},
		{"learn needs the cookie's name", map[string]string{AnnotationAffinity: "learn"},
			routing.CookieAffinity{}, routing.LearnAffinity{}, []string{"learn needs"}},
		{"learn with a bad name", map[string]string{AnnotationAffinity: "learn", AnnotationCookieName: "a;b"},
			routing.CookieAffinity{}, routing.LearnAffinity{}, []string{"want a cookie name", "learn needs"}},
		{"unknown mode", map[string]string{AnnotationAffinity: "ip"}, routing.CookieAffinity{}, routing.LearnAffinity{},
			[]string{`want "cookie" or "learn"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, errs := parseAnnotations(tc.in)
			if got := a.affinityOf(); got != tc.want {
				t.Errorf("affinity %+v, want %+v", got, tc.want)
			}
			if got := a.learnOf(); got != tc.learn {
				t.Errorf("learn %+v, want %+v", got, tc.learn)
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
