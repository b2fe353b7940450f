package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/replica"
)

func TestParseKVZone(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want replica.KVZone
		err  string
	}{
		{"sessions", replica.KVZone{Name: "sessions"}, ""},
		{"sessions:10m", replica.KVZone{Name: "sessions", TTL: 10 * time.Minute}, ""},
		{"sessions:10m:64Mi", replica.KVZone{Name: "sessions", TTL: 10 * time.Minute, MaxBytes: 64 << 20}, ""},
		{"s::1000", replica.KVZone{Name: "s", MaxBytes: 1000}, ""},
		{"", replica.KVZone{}, "zone name"},
		{"a/b", replica.KVZone{}, "zone name"},
		{strings.Repeat("z", 65), replica.KVZone{}, "zone name"},
		{"s:soon", replica.KVZone{}, "ttl"},
		{"s:-1s", replica.KVZone{}, "ttl"},
		{"s:1s:lots", replica.KVZone{}, "max-bytes"},
		{"s:1s:0", replica.KVZone{}, "max-bytes"},
		{"s:1s:1Mi:x", replica.KVZone{}, "want name"},
	} {
		got, err := parseKVZone(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want one about %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"standalone", "--manifests", "x", "--kv-zone", "a", "--kv-zone", "a:1m"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "given twice") {
		t.Fatalf("a zone given twice: exit %d, stderr %s", code, errb.String())
	}
}
