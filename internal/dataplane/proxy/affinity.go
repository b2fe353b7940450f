package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// Cookie affinity (routing.CookieAffinity). The cookie's value names the
// endpoint and carries a MAC:
//
//	base64url(endpoint) "." base64url(HMAC-SHA256(key, backend name NUL endpoint)[:16])
//
// The key is Config.AffinityKey, the same on every replica (derived from
// the mesh's cluster secret), so any replica routes a cookie another one
// set, with no lookup and no shared state. The MAC keeps clients from
// naming endpoints of their choice; a cookie whose endpoint left the
// backend (or whose MAC does not verify) is ignored: the request is
// balanced and answered with a new cookie.

// affinityState is a backend's precomputed cookie values, built with its
// backendState when a table is applied.
type affinityState struct {
	a      *routing.CookieAffinity
	values []string       // cookie value per endpoint index
	index  map[string]int // cookie value → endpoint index
	attrs  string         // "; Path=/; Max-Age=…" appended to Set-Cookie
}

// newAffinityKey returns key, or a random key when key is empty (cookies
// then only route on this process).
func newAffinityKey(key []byte) []byte {
	if len(key) > 0 {
		return key
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}

// cookieValue is the cookie naming endpoint ep of backend name.
func cookieValue(key []byte, name, ep string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(ep))
	return base64.RawURLEncoding.EncodeToString([]byte(ep)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func newAffinityState(key []byte, b *routing.Backend) *affinityState {
	if b.Affinity == nil {
		return nil
	}
	a := b.Affinity
	st := &affinityState{a: a, values: make([]string, len(b.Endpoints)), index: make(map[string]int, len(b.Endpoints))}
	for i, ep := range b.Endpoints {
		v := cookieValue(key, b.Name, ep)
		st.values[i], st.index[v] = v, i
	}
	var sb strings.Builder
	path := a.Path
	if path == "" {
		path = "/"
	}
	sb.WriteString("; Path=" + path)
	if a.MaxAge > 0 {
		sb.WriteString("; Max-Age=" + strconv.FormatInt(int64(a.MaxAge/time.Second), 10))
	}
	if a.SameSite != "" {
		sb.WriteString("; SameSite=" + a.SameSite)
	}
	if a.Secure || a.SameSite == "None" { // browsers drop SameSite=None without Secure
		sb.WriteString("; Secure")
	}
	sb.WriteString("; HttpOnly")
	st.attrs = sb.String()
	return st
}

// pinned returns the endpoint index the request's affinity cookie names,
// or -1 (no cookie, a forged or stale one). It does not allocate.
func (st *affinityState) pinned(h *exchange.Header) int {
	for _, f := range h.Fields() {
		if !exchange.EqualFold(f.Name, "Cookie") {
			continue
		}
		v := f.Value
		for v != "" {
			var pair string
			pair, v, _ = strings.Cut(v, ";")
			pair = strings.TrimSpace(pair)
			name, val, ok := strings.Cut(pair, "=")
			if !ok || name != st.a.Name {
				continue
			}
			if i, ok := st.index[val]; ok {
				return i
			}
		}
	}
	return -1
}

// setCookie adds the Set-Cookie naming endpoint idx to h unless the
// request already carried it.
func (st *affinityState) setCookie(h *exchange.Header, idx, pinned int) {
	if idx < 0 || idx == pinned {
		return
	}
	h.Add("Set-Cookie", st.a.Name+"="+st.values[idx]+st.attrs)
}
