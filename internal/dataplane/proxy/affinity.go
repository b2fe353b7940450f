package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/meshgate/meshgate/internal/dataplane/exchange"
	"github.com/meshgate/meshgate/internal/routing"
)

// Cookie affinity (routing.CookieAffinity). The cookie's value names the
// endpoint and carries a MAC:
//
//	base64url(endpoint) "." base64url(HMAC-SHA256(key, backend name NUL endpoint [NUL scope])[:16])
//
// and, for an affinity with a Lifetime, its expiry in Unix seconds too:
//
//	base64url(endpoint) "." base36(expiry) "." base64url(HMAC-SHA256(key, name NUL endpoint NUL scope NUL base36(expiry))[:16])
//
// The key is Config.AffinityKey, the same on every replica (derived from
// the mesh's cluster secret), so any replica routes a cookie another one
// set, with no lookup and no shared state. The MAC keeps clients from
// naming endpoints of their choice or extending a session; a cookie whose
// endpoint left the backend, whose session expired or whose MAC does not
// verify is ignored: the request is balanced and answered with a new
// cookie. A Header affinity carries the same values in a header.

// affinityState is a backend's precomputed cookie values, built with its
// backendState when a table is applied.
type affinityState struct {
	a      *routing.CookieAffinity
	key    []byte
	name   string         // backend name, under the MAC
	eps    []string       // endpoint per index (Lifetime values are made per request)
	values []string       // without Lifetime: cookie value per endpoint index
	index  map[string]int // cookie value (or, with Lifetime, its endpoint part) → endpoint index
	attrs  string         // "; Path=/; Max-Age=…" appended to Set-Cookie
	tls    string         // attrs of cookies set on TLS requests
	macs   sync.Pool      // of *macScratch keyed with key, for Lifetime values
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

// cookieValue is the cookie naming endpoint ep of backend name in scope
// (without Lifetime).
func cookieValue(key []byte, name, ep, scope string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(ep))
	if scope != "" {
		m.Write([]byte{0})
		m.Write([]byte(scope))
	}
	return base64.RawURLEncoding.EncodeToString([]byte(ep)) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

func newAffinityState(key []byte, b *routing.Backend) *affinityState {
	if b.Affinity == nil {
		return nil
	}
	a := b.Affinity
	st := &affinityState{a: a, key: key, name: b.Name, eps: b.Endpoints, index: make(map[string]int, len(b.Endpoints))}
	st.macs.New = func() any { return &macScratch{h: hmac.New(sha256.New, key)} }
	if a.Lifetime > 0 {
		for i, ep := range b.Endpoints {
			st.index[base64.RawURLEncoding.EncodeToString([]byte(ep))] = i
		}
	} else {
		st.values = make([]string, len(b.Endpoints))
		for i, ep := range b.Endpoints {
			v := cookieValue(key, b.Name, ep, a.Scope)
			st.values[i], st.index[v] = v, i
		}
	}
	if a.Header {
		return st
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
	secure := a.Secure || a.SameSite == "None" // browsers drop SameSite=None without Secure
	if secure {
		sb.WriteString("; Secure")
	}
	sb.WriteString("; HttpOnly")
	st.attrs, st.tls = sb.String(), sb.String()
	if a.SecureOnTLS && !secure {
		st.tls += "; Secure"
	}
	return st
}

// pinned returns the endpoint index the request's affinity cookie (or
// header) names, or -1 (none, a forged, stale or expired one). Without a
// Lifetime it does not allocate.
func (st *affinityState) pinned(h *exchange.Header, now time.Time) int {
	for _, f := range h.Fields() {
		if st.a.Header {
			if exchange.EqualFold(f.Name, st.a.Name) {
				if i := st.verify(strings.TrimSpace(f.Value), now); i >= 0 {
					return i
				}
			}
			continue
		}
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
			if i := st.verify(val, now); i >= 0 {
				return i
			}
		}
	}
	return -1
}

// verify returns the endpoint index value names, or -1.
func (st *affinityState) verify(val string, now time.Time) int {
	if st.a.Lifetime <= 0 {
		if i, ok := st.index[val]; ok {
			return i
		}
		return -1
	}
	epPart, rest, ok := strings.Cut(val, ".")
	if !ok {
		return -1
	}
	exp, macPart, ok := strings.Cut(rest, ".")
	if !ok {
		return -1
	}
	i, ok := st.index[epPart]
	if !ok {
		return -1
	}
	e, err := strconv.ParseInt(exp, 36, 64)
	if err != nil || e <= now.Unix() || e > now.Add(st.a.Lifetime).Unix()+1 {
		return -1
	}
	var got [16]byte
	if len(macPart) != macChars { // before decoding: Decode needs room for what it is given
		return -1
	}
	if n, err := base64.RawURLEncoding.Decode(got[:], []byte(macPart)); err != nil || n != len(got) {
		return -1
	}
	want := st.mac(st.eps[i], exp)
	if !hmac.Equal(got[:], want[:]) {
		return -1
	}
	return i
}

// macChars is the length of a truncated MAC (16 bytes) in base64url.
const macChars = 22

// macScratch is a keyed HMAC with its buffers, pooled per affinityState so
// that verifying a Lifetime value does not allocate.
type macScratch struct {
	h   hash.Hash
	in  []byte
	sum []byte
}

// mac is the truncated MAC of a Lifetime value for endpoint ep expiring at
// exp (base36 Unix seconds).
func (st *affinityState) mac(ep, exp string) [16]byte {
	m := st.macs.Get().(*macScratch)
	m.in = append(append(append(append(append(append(append(m.in[:0], st.name...), 0), ep...), 0), st.a.Scope...), 0), exp...)
	m.h.Reset()
	m.h.Write(m.in)
	m.sum = m.h.Sum(m.sum[:0])
	var out [16]byte
	copy(out[:], m.sum)
	st.macs.Put(m)
	return out
}

// value is the cookie value naming endpoint idx for a session starting now.
func (st *affinityState) value(idx int, now time.Time) string {
	if st.a.Lifetime <= 0 {
		return st.values[idx]
	}
	ep := st.eps[idx]
	exp := strconv.FormatInt(now.Add(st.a.Lifetime).Unix(), 36)
	mac := st.mac(ep, exp)
	return base64.RawURLEncoding.EncodeToString([]byte(ep)) + "." + exp + "." + base64.RawURLEncoding.EncodeToString(mac[:])
}

// setCookie adds the Set-Cookie (or the header) naming endpoint idx to h
// unless the request already carried it; tls says the request came over
// TLS.
func (st *affinityState) setCookie(h *exchange.Header, idx, pinned int, now time.Time, tls bool) {
	if idx < 0 || idx == pinned {
		return
	}
	if st.a.Header {
		h.Add(st.a.Name, st.value(idx, now))
		return
	}
	attrs := st.attrs
	if tls {
		attrs = st.tls
	}
	h.Add("Set-Cookie", st.a.Name+"="+st.value(idx, now)+attrs)
}
