package admin

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestRequireBearer(t *testing.T) {
	file := filepath.Join(t.TempDir(), "token")
	h := RequireBearer(file, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	do := func(auth string) int {
		req := httptest.NewRequest(http.MethodPost, "/x", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if got := do("Bearer anything"); got != http.StatusServiceUnavailable {
		t.Errorf("no token file: %d, want 503", got)
	}
	os.WriteFile(file, []byte("  \n"), 0o600)
	if got := do("Bearer "); got != http.StatusServiceUnavailable {
		t.Errorf("empty token file: %d, want 503", got)
	}
	os.WriteFile(file, []byte("s3cret\n"), 0o600)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Basic s3cret", http.StatusUnauthorized},
		{"Bearer s3cre", http.StatusUnauthorized},
		{"Bearer s3cret", http.StatusNoContent},
	} {
		if got := do(tc.auth); got != tc.want {
			t.Errorf("%q: %d, want %d", tc.auth, got, tc.want)
		}
	}
	os.WriteFile(file, []byte("rotated"), 0o600) // a Secret update in place
	if do("Bearer s3cret") != http.StatusUnauthorized || do("Bearer rotated") != http.StatusNoContent {
		t.Error("a rotated token did not take effect at once")
	}
}
