package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"os"
	"strings"
)

// RequireBearer serves h only to requests carrying "Authorization: Bearer
// <token>" with the token held in tokenFile (surrounding white space
// ignored). The file is read on every request, so a rotated token (a
// Kubernetes Secret volume updates in place) takes effect without a
// restart. A missing or wrong token is 401 with WWW-Authenticate; a file
// that cannot be read or is empty is 503 (nothing is served without a
// token). Tokens are compared in constant time, through their SHA-256.
func RequireBearer(tokenFile string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want, err := os.ReadFile(tokenFile)
		want = bytes.TrimSpace(want)
		if err != nil || len(want) == 0 {
			http.Error(w, "admin token not available", http.StatusServiceUnavailable)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256(want)
		if !ok || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshgate admin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
