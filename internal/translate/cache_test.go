package translate

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestCacheInsertRemove(t *testing.T) {
	c := NewCache("meshgate/l4")
	ing := ingress("default", "a")
	ing.ResourceVersion = "1"
	steps := []struct {
		name   string
		op     func() bool
		expect bool
	}{
		{"insert ingress", func() bool { return c.Insert(ing) }, true},
		{"resync same version", func() bool { return c.Insert(ing.DeepCopy()) }, false},
		{"new version", func() bool { i := ing.DeepCopy(); i.ResourceVersion = "2"; return c.Insert(i) }, true},
		{"opaque secret", func() bool {
			return c.Insert(&corev1.Secret{ObjectMeta: meta("default", "o"), Type: corev1.SecretTypeOpaque})
		}, false},
		{"tls secret", func() bool { return c.Insert(tlsSecret(t, "default", "s", "s")) }, true},
		{"unrelated configmap", func() bool { return c.Insert(configMap("default", "x", nil)) }, false},
		{"l4 configmap", func() bool { return c.Insert(configMap("meshgate", "l4", nil)) }, true},
		{"slice", func() bool { return c.Insert(slice("default", "e-1", "echo", "", 80)) }, true},
		{"unknown kind", func() bool { return c.Insert(&corev1.Pod{ObjectMeta: meta("default", "p")}) }, false},
		{"remove slice", func() bool { return c.Remove(slice("default", "e-1", "echo", "", 80)) }, true},
		{"remove slice again", func() bool { return c.Remove(slice("default", "e-1", "echo", "", 80)) }, false},
		{"remove opaque secret", func() bool {
			return c.Remove(&corev1.Secret{ObjectMeta: meta("default", "o")})
		}, false},
		{"remove tls secret", func() bool { return c.Remove(&corev1.Secret{ObjectMeta: meta("default", "s")}) }, true},
		{"remove ingress", func() bool { return c.Remove(ingress("default", "a")) }, true},
		{"remove class never added", func() bool { return c.Remove(ourClass(false)) }, false},
		{"remove unrelated configmap", func() bool { return c.Remove(configMap("default", "x", nil)) }, false},
	}
	for _, s := range steps {
		if got := s.op(); got != s.expect {
			t.Errorf("%s: rebuild = %v, want %v", s.name, got, s.expect)
		}
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len = %d, want 1 (the l4 configmap)", n)
	}
	if len(c.slicesByService) != 0 {
		t.Errorf("slice index not cleaned: %v", c.slicesByService)
	}
}

func TestCacheSliceRelabel(t *testing.T) {
	c := NewCache("")
	s := slice("default", "e-1", "echo", "", 80)
	c.Insert(s)
	moved := slice("default", "e-1", "other", "", 80)
	c.Insert(moved)
	if len(c.EndpointSlicesFor("default", "echo")) != 0 || len(c.EndpointSlicesFor("default", "other")) != 1 {
		t.Errorf("relabelled slice indexed wrongly: %v", c.slicesByService)
	}
}

func TestCacheLookups(t *testing.T) {
	c := cacheOf(tlsSecret(t, "default", "good", "good"),
		&corev1.Secret{ObjectMeta: meta("default", "plain"), Type: corev1.SecretTypeOpaque},
		&corev1.Secret{ObjectMeta: meta("default", "stringdata"), Type: corev1.SecretTypeTLS,
			StringData: map[string]string{corev1.TLSCertKey: string(must(selfSigned(t, "sd"))), corev1.TLSPrivateKeyKey: string(keyPEM(selfSigned(t, "sd")))}},
		service("default", "svc", "80>80"))
	if cert, err := c.LookupTLSSecret("default", "good"); err != nil || cert.Leaf == nil {
		t.Errorf("good: %v %v", cert, err)
	}
	if cert, err := c.LookupTLSSecret("default", "stringdata"); err != nil || cert.Leaf.Subject.CommonName != "sd" {
		t.Errorf("stringData: %v %v", cert, err)
	}
	if _, err := c.LookupTLSSecret("default", "plain"); !errors.Is(err, ErrInvalidSecret) {
		t.Errorf("plain: %v", err)
	}
	if _, err := c.LookupTLSSecret("default", "none"); !errors.Is(err, ErrNotFound) {
		t.Errorf("none: %v", err)
	}
	if _, err := c.LookupService("default", "svc"); err != nil {
		t.Error(err)
	}
	for _, err := range []error{
		func() error { _, err := c.LookupService("x", "svc"); return err }(),
		func() error { _, err := c.LookupTLSPolicy("x", "p"); return err }(),
		func() error { _, err := c.LookupConfigMap("x", "m"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("want ErrNotFound, got %v", err)
		}
	}
}

func must(crt, _ []byte) []byte { return crt }
func keyPEM(_, k []byte) []byte { return k }
