package admin

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
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
// token). Both errors are JSON (see WriteError). Tokens are compared in
// constant time, through their SHA-256.
func RequireBearer(tokenFile string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		want, err := os.ReadFile(tokenFile)
		want = bytes.TrimSpace(want)
		if err != nil || len(want) == 0 {
			WriteError(w, http.StatusServiceUnavailable, "admin token not available")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a, b := sha256.Sum256([]byte(strings.TrimSpace(got))), sha256.Sum256(want)
		if !ok || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshgate admin"`)
			WriteError(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ErrorBody is the JSON body of every error of the admin API's write
// endpoints: {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
}

// WriteError answers status with an ErrorBody carrying msg.
func WriteError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
