package http3

import (
	"sync/atomic"

	"github.com/meshgate/meshgate/internal/routing"
)

// TablePolicy returns Config.Allow0RTT and Config.Any0RTT functions that
// read the current table of h on every call: allow reports the Allow0RTT of
// the TLS policy that h's table selects for an SNI name (TLSHosts.Lookup,
// default host included); any reports whether some TLS host's policy allows
// 0-RTT, computed once per table. Both are safe for concurrent use and
// return false while h holds no table.
func TablePolicy(h *routing.Holder) (allow func(serverName string) bool, anyHost func() bool) {
	allow = func(serverName string) bool {
		t := h.Load()
		if t == nil {
			return false
		}
		th := t.TLS.Lookup(serverName)
		return th != nil && th.Policy != nil && th.Policy.Allow0RTT
	}
	type cached struct {
		t *routing.Table
		v bool
	}
	var last atomic.Pointer[cached]
	anyHost = func() bool {
		t := h.Load()
		if t == nil {
			return false
		}
		if c := last.Load(); c != nil && c.t == t {
			return c.v
		}
		v := anyAllows0RTT(&t.TLS)
		last.Store(&cached{t: t, v: v})
		return v
	}
	return allow, anyHost
}

func anyAllows0RTT(h *routing.TLSHosts) bool {
	ok := func(th *routing.TLSHost) bool { return th != nil && th.Policy != nil && th.Policy.Allow0RTT }
	if ok(h.Default) {
		return true
	}
	for _, th := range h.Exact {
		if ok(th) {
			return true
		}
	}
	for _, th := range h.Wildcards {
		if ok(th) {
			return true
		}
	}
	return false
}
