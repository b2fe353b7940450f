package translate

import (
	"testing"
	"time"
)

func TestParseTimeout(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"30", 30 * time.Second, true},
		{" 5 ", 5 * time.Second, true},
		{"1m30s", 90 * time.Second, true},
		{"250ms", 250 * time.Millisecond, true},
		{"24h", 24 * time.Hour, true},
		{"86401", 0, false},
		{"25h", 0, false},
		{"0", 0, false},
		{"-5s", 0, false},
		{"", 0, false},
		{"5x", 0, false},
		{"1.5", 0, false},
	}
	for _, c := range cases {
		got, err := parseTimeout(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseTimeout(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1024", 1024, true},
		{"100k", 100 << 10, true},
		{"100K", 100 << 10, true},
		{"8m", 8 << 20, true},
		{"1g", 1 << 30, true},
		{"1024g", 1 << 40, true},
		{"1025g", 0, false},
		{"9223372036854775807k", 0, false},
		{"0", 0, false},
		{"-1m", 0, false},
		{"m", 0, false},
		{"", 0, false},
		{"1.5m", 0, false},
		{"8mb", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

func TestParseAnnotations(t *testing.T) {
	a, errs := parseAnnotations(map[string]string{
		AnnotationBackendProto:   "https",
		AnnotationSSLRedirect:    "False",
		AnnotationSSLPassthrough: "true",
		AnnotationConnectTimeout: "3s",
		AnnotationReadTimeout:    "60",
		AnnotationBodySize:       "1g",
		AnnotationTLSPolicy:      "strict",
		"other.io/ignored":       "x",
	})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if a.protocol != "https" || a.sslRedirect == nil || *a.sslRedirect || !a.passthrough ||
		a.connectTimeout != 3*time.Second || a.readTimeout != time.Minute || a.maxBodyBytes != 1<<30 || a.tlsPolicy != "strict" {
		t.Errorf("parsed %+v", a)
	}
	a, errs = parseAnnotations(map[string]string{
		AnnotationSSLRedirect: "yes", AnnotationTLSPolicy: "Not_A_Name", AnnotationSSLPassthrough: "1",
	})
	if len(errs) != 3 || a.sslRedirect != nil || a.tlsPolicy != "" || a.passthrough {
		t.Errorf("invalid values: %+v %v", a, errs)
	}
}

// FuzzParseAnnotations checks that no value panics and that accepted values
// are within their documented bounds.
func FuzzParseAnnotations(f *testing.F) {
	for _, s := range []string{"", "30", "1m", "8m", "1g", "true", "HTTP", "grpc", "strict", "-1", "99999999999999999999k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		m := map[string]string{}
		for _, k := range []string{AnnotationBackendProto, AnnotationSSLRedirect, AnnotationSSLPassthrough,
			AnnotationConnectTimeout, AnnotationReadTimeout, AnnotationBodySize, AnnotationTLSPolicy} {
			m[k] = v
		}
		a, errs := parseAnnotations(m)
		if len(errs) > len(m) {
			t.Fatalf("%d errors for %d annotations", len(errs), len(m))
		}
		if a.connectTimeout < 0 || a.connectTimeout > MaxTimeout || a.readTimeout < 0 || a.readTimeout > MaxTimeout {
			t.Fatalf("timeout out of bounds: %v %v", a.connectTimeout, a.readTimeout)
		}
		if a.maxBodyBytes < 0 || a.maxBodyBytes > MaxBodySize {
			t.Fatalf("body size out of bounds: %d", a.maxBodyBytes)
		}
		switch a.protocol {
		case "", "http", "https", "h2c", "grpc":
		default:
			t.Fatalf("protocol %q", a.protocol)
		}
	})
}

// FuzzParseL4Entry checks ParseL4Entry never panics and accepted entries are
// in range.
func FuzzParseL4Entry(f *testing.F) {
	f.Add("tcp.53", "default/dns:53")
	f.Add("udp.5353", "default/udp-echo:5353:PROXY")
	f.Add("tcp.1", "ns/svc:http:PROXYv1")
	f.Add("x", "y")
	f.Fuzz(func(t *testing.T, k, v string) {
		e, err := ParseL4Entry(k, v)
		if err != nil {
			return
		}
		if e.Port < 1 || e.Port > 65535 || e.Namespace == "" || e.Service == "" ||
			(e.ServicePort.Name == "") == (e.ServicePort.Number == 0) || e.ProxyProtocol < 0 || e.ProxyProtocol > 2 {
			t.Fatalf("accepted bad entry %+v from %q=%q", e, k, v)
		}
	})
}
