package sessionmesh

import (
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// freshTicketKey connects to addr with a new client and returns the id of
// the key its ticket is sealed under.
func freshTicketKey(t testing.TB, addr, sni string) uint64 {
	t.Helper()
	c := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: sni}
	c.mustConnect(t, addr)
	return ticketKeyID(t, identity(t, c.cache, ""))
}

// TestTicketKeyRotationPerPolicy is finding 7 of issue 15: one policy's
// ticketKeyRotation applied to every TicketKeys host of the node (the ring
// was node-wide and rotated at the shortest interval any host had asked
// for, until restart). A tenant's policy rotating every 50 ms retired the
// keys of another policy's tickets (rotation 1 h) after maxRingKeys of its
// own rotations, so those tickets stopped resuming. Before the fix, the
// slow host's ticket did not resume and its new tickets were sealed under
// the fast policy's keys.
func TestTicketKeyRotationPerPolicy(t *testing.T) {
	tn := newTestNode(t, nil, "solo", TicketKeys, func(c *Config) { c.ListenAddr, c.Peers = "", nil })
	cert := mustCert()
	slow := testHost(cert, TicketKeys)
	slow.Policy, slow.TicketKeyRotation = "tenant-a/slow", time.Hour
	fast := testHost(cert, TicketKeys)
	fast.Policy, fast.TicketKeyRotation = "tenant-b/fast", 50*time.Millisecond
	slowAddr := tn.serveHost(t, slow)
	fastAddr := tn.serveHost(t, fast)

	c := &client{cache: &fixedCache{}, max: tls.VersionTLS13, sni: "a.example.com"}
	c.mustConnect(t, slowAddr)
	slowKey := ticketKeyID(t, identity(t, c.cache, ""))

	// Wait until the fast policy has rotated past a whole ring: every key
	// of the ring it started with is retired by then.
	seen := map[uint64]bool{}
	waitFor(t, "the fast policy's ring rotated maxRingKeys+1 times", func() bool {
		seen[freshTicketKey(t, fastAddr, "b.example.com")] = true
		return len(seen) > maxRingKeys
	})
	if seen[slowKey] {
		t.Error("the fast policy sealed under the slow policy's key")
	}
	if !c.mustConnect(t, slowAddr) {
		t.Error("the slow policy's ticket no longer resumes: another policy's rotation retired its key")
	}
	if got := freshTicketKey(t, slowAddr, "a.example.com"); got != slowKey {
		t.Error("the slow policy rotated at the fast policy's interval")
	}
}

// The rest of finding 7: the interval was only ever lowered, so a policy
// edited from 1m back to 1h (or deleted) kept every host at 1m until
// restart. A ring's interval is the one its hosts were last configured
// with, and other rings keep theirs; beyond maxRings, hosts share the
// default ring at the node's interval and are counted.
func TestTicketRingIntervalFollowsPolicy(t *testing.T) {
	n, err := New(Config{NodeName: "x", TicketKeyRotation: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	cert := mustCert()
	configure := func(policy string, rot time.Duration) {
		h := testHost(cert, TicketKeys)
		h.Policy, h.TicketKeyRotation = policy, rot
		n.ConfigureTLS(&tls.Config{}, h)
	}
	interval := func(policy string) time.Duration {
		r, _ := n.tickets.get(ringName(policy))
		return r.interval()
	}
	configure("a/fast", time.Minute)
	configure("b/slow", time.Hour)
	configure("c/unset", 0)
	if got := interval("a/fast"); got != time.Minute {
		t.Errorf("a/fast rotates every %v, want 1m", got)
	}
	if got := interval("b/slow"); got != time.Hour {
		t.Errorf("b/slow rotates every %v, want 1h: another policy's interval leaked", got)
	}
	if got := interval("c/unset"); got != 2*time.Hour {
		t.Errorf("a policy without an interval rotates every %v, want the node's 2h", got)
	}
	configure("a/fast", time.Hour) // the policy is edited back
	if got := interval("a/fast"); got != time.Hour {
		t.Errorf("after the edit a/fast rotates every %v, want 1h", got)
	}
	if got := interval(""); got != 2*time.Hour {
		t.Errorf("the default ring rotates every %v, want the node's 2h", got)
	}

	// Rings are bounded; the hosts beyond share the default ring.
	for i := len(n.tickets.all()); i < maxRings; i++ {
		configure(fmt.Sprintf("fill/%d", i), time.Minute)
	}
	configure("late/policy", time.Minute)
	if got := len(n.tickets.all()); got != maxRings {
		t.Errorf("%d rings, want maxRings = %d", got, maxRings)
	}
	if got := n.m.ringsFull.Load(); got != 1 {
		t.Errorf("ticket_rings_full_total = %d, want 1", got)
	}
	if got := interval(""); got != 2*time.Hour {
		t.Errorf("a host beyond the bound changed the default ring's interval to %v", got)
	}
	// Long policy names are rings of their own, within the wire's bound.
	long := strings.Repeat("n", 63) + "/" + strings.Repeat("p", 253)
	if name := ringName(long); len(name) > wire.MaxNameLen || name == ringName(long+"x") {
		t.Errorf("ring name of a 317-byte policy: %q", name)
	}
}
