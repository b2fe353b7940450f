package replica

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testkit"
)

// TestKVAPIAcrossReplicas drives /api/kv of three replicas sharing a mesh:
// a PUT on one is read on another, a DELETE reaches every replica, an
// entry written with a short TTL disappears everywhere at its expiry, and
// requests without the admin token are refused with a JSON 401.
func TestKVAPIAcrossReplicas(t *testing.T) {
	tc := startCluster(t, 3, func(_ int, c *Config) {
		c.KVZones = []KVZone{{Name: "flags", TTL: time.Hour, MaxBytes: 1 << 20}}
	})
	get := func(i int, key string) (int, string) {
		return tc.adminDo(t, i, http.MethodGet, "/api/kv/flags/"+key, "", true)
	}
	if code, body := tc.adminDo(t, 0, http.MethodPut, "/api/kv/flags/feature/x", "on", true); code != http.StatusOK {
		t.Fatalf("PUT on r1: %d %s", code, body)
	}
	testkit.WaitFor(t, 5*time.Second, "r2 reads r1's PUT", func() bool {
		code, body := get(1, "feature/x")
		return code == http.StatusOK && body == "on"
	})
	if code, body := tc.adminDo(t, 1, http.MethodGet, "/api/kv/flags", "", true); code != http.StatusOK ||
		!strings.Contains(body, `"key":"feature/x"`) {
		t.Fatalf("r2's zone listing: %d %s", code, body)
	}
	if code, body := tc.adminDo(t, 2, http.MethodDelete, "/api/kv/flags/feature/x", "", true); code != http.StatusNoContent {
		t.Fatalf("DELETE on r3: %d %s", code, body)
	}
	for i := range tc.reps {
		testkit.WaitFor(t, 5*time.Second, "the deletion reaches every replica", func() bool {
			code, _ := get(i, "feature/x")
			return code == http.StatusNotFound
		})
	}

	// A one-second entry: seen on r3, then gone from every replica once
	// it expired (Get stops returning it at its expiry, whatever the sweep).
	if code, body := tc.adminDo(t, 1, http.MethodPut, "/api/kv/flags/brief?ttl=1s", "x", true); code != http.StatusOK {
		t.Fatalf("PUT ttl=1s: %d %s", code, body)
	}
	put := time.Now()
	testkit.WaitFor(t, 5*time.Second, "r3 reads the short entry", func() bool { code, _ := get(2, "brief"); return code == http.StatusOK })
	for i := range tc.reps {
		testkit.WaitFor(t, 5*time.Second, "the short entry expires everywhere", func() bool {
			code, _ := get(i, "brief")
			return code == http.StatusNotFound
		})
	}
	if time.Since(put) < time.Second {
		t.Fatal("the entry vanished before its TTL")
	}

	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		code, body := tc.adminDo(t, 0, m, "/api/kv/flags/k", "v", false)
		if code != http.StatusUnauthorized || !strings.Contains(body, `"error"`) {
			t.Errorf("%s without the token: %d %s", m, code, body)
		}
	}
	if code, _ := tc.adminDo(t, 0, http.MethodGet, "/api/kv", "", false); code != http.StatusUnauthorized {
		t.Errorf("zone list without the token: %d", code)
	}
	if code, body := tc.adminDo(t, 0, http.MethodGet, "/api/kv", "", true); code != http.StatusOK || !strings.Contains(body, `"name":"flags"`) {
		t.Errorf("zone list: %d %s", code, body)
	}
}
