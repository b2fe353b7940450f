package sessionmesh

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/sessionmesh/mesh"
	"github.com/meshgate/meshgate/internal/sessionmesh/pki"
	"github.com/meshgate/meshgate/internal/sessionmesh/store"
)

// Miss reasons (label values of meshgate_sessionmesh_resumption_misses_total).
const (
	missUnknown = iota // id well-formed, record not found and issuer not asked
	missExpired
	missBinding // issued for another SNI name, certificate or policy generation
	missRemote  // issuer asked, no record in time
	missRevoked
	missInvalid // malformed or forged id, bad ticket, unparsable state
	missLimited // a remote lookup refused by the budget (budget.go)
	numMiss

	missNone = -1 // not a miss: the session was found
)

var missNames = [numMiss]string{"unknown_id", "expired", "binding_mismatch", "remote_miss", "revoked", "invalid", "lookup_limited"}

const (
	modeStateful = iota
	modeTicketKeys
	modeSessionID // TLS 1.2 session IDs, whatever the host's mode
	numModes
)

var modeNames = [numModes]string{"Stateful", "TicketKeys", "SessionID"}

// Resumption kinds (label values of meshgate_tls_handshakes_by_kind_total).
const (
	kindSessionID   = iota // the TLS 1.2 session-ID path (internal/tls12)
	kindTLS12Ticket        // crypto/tls, TLS 1.2
	kindTLS13PSK           // crypto/tls, TLS 1.3
	numKinds
)

var kindNames = [numKinds]string{"session_id", "tls12_ticket", "tls13_psk"}

// kindOf maps a crypto/tls handshake's version to its resumption kind.
func kindOf(version uint16) int {
	if version >= tls.VersionTLS13 {
		return kindTLS13PSK
	}
	return kindTLS12Ticket
}

// versions indexes per-TLS-version counters: 0 TLS 1.2 (and older), 1 TLS 1.3.
func versionIdx(v uint16) int {
	if v >= tls.VersionTLS13 {
		return 1
	}
	return 0
}

var versionNames = [2]string{"1.2", "1.3"}

// metrics holds the node's counters; it is a prometheus.Collector reading
// them (and the store and mesh) at scrape time, so the hot path only does
// atomic adds.
type metrics struct {
	n             *Node
	hits          [2]atomic.Uint64
	misses        [numMiss]atomic.Uint64
	full          [2]atomic.Uint64
	resumed       [2]atomic.Uint64
	byKind        [numKinds][2]atomic.Uint64 // [kind][full, resumed]
	wraps         [numModes]atomic.Uint64
	rewraps       atomic.Uint64
	early         [2]atomic.Uint64 // 0-RTT offers: [refused, accepted]
	sessionIDHits atomic.Uint64
	remoteLookups atomic.Uint64
	remoteHits    atomic.Uint64
	revoked       atomic.Uint64
	ringsFull     atomic.Uint64
	keysRetired   atomic.Uint64            // ticket keys retired by revocations (RetireTicketKeys)
	limited       [numLimits]atomic.Uint64 // remote lookups refused, by reason // hosts given the default ring: maxRings reached
	latency       prometheus.Histogram
	violations    violations

	descs map[string]*prometheus.Desc
	// tlsHandshakes and tlsByKind are meshgate_tls_handshakes_total and
	// meshgate_tls_handshakes_by_kind_total, the listener-level names of the
	// same handshake counters (see ConfigureTLS).
	tlsHandshakes, tlsByKind *prometheus.Desc
}

func newMetrics(n *Node) *metrics {
	m := &metrics{n: n, descs: make(map[string]*prometheus.Desc)}
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "meshgate_sessionmesh_replication_latency_seconds",
		Help:    "Time from a session's insert on its issuing node to its arrival on this node, with the clock offset between the two removed (estimated from the issuer's heartbeats; the network's minimum one-way delay is not included).",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .1, 1},
	})
	d := func(name, help string, labels ...string) {
		m.descs[name] = prometheus.NewDesc("meshgate_sessionmesh_"+name, help, labels, nil)
	}
	d("zone_records", "Live key-value entries of a zone on this node (tombstones excluded).", "zone")
	d("zone_tombstones", "Deletions a zone keeps so that older writes arriving late stay deleted.", "zone")
	d("zone_bytes", "Memory charged to a zone (entries and tombstones).", "zone")
	d("zone_evictions_total", "Entries a zone evicted to stay within its budget.", "zone")
	d("zone_stale_writes_total", "Writes to a zone refused because it held a newer one for the key.", "zone")
	d("zone_pending", "Key-value entries queued for a peer.", "peer")
	d("zone_drops_total", "Key-value entries not delivered: a full queue, a failed write, or a peer too old for them.")
	d("zone_nodes_online", "Peers online at a protocol version that carries key-value zones.")
	d("records", "Live session records in the local store.")
	d("store_bytes", "Accounted bytes of the local store.")
	d("evictions_total", "Records evicted to stay within the byte budget.")
	d("ready", "1 once the initial snapshot is done.")
	d("peers_online", "Peers with an established outbound connection.")
	d("records_pending", "Records queued for a peer.", "peer")
	d("peer_drops_total", "Records dropped because a peer's queue was full.", "peer")
	d("bytes_in_total", "Mesh bytes received (TLS records included).")
	d("bytes_out_total", "Mesh bytes sent (TLS records included).")
	d("messages_in_total", "Mesh messages received.")
	d("messages_out_total", "Mesh messages sent.")
	d("drops_total", "Mesh messages dropped because a queue was full.")
	d("rejected_connections_total", "Mesh connections or frames rejected, by reason.", "reason")
	d("resumption_hits_total", "Sessions resumed, by TLS version.", "version")
	d("resumption_misses_total", "Offered sessions that could not resume, by reason.", "reason")
	d("handshakes_total", "Completed TLS handshakes by TLS version and kind (full or resumed).", "version", "kind")
	m.tlsHandshakes = prometheus.NewDesc("meshgate_tls_handshakes_total",
		"Completed TLS handshakes (TCP and QUIC) by protocol version and whether the session was resumed.",
		[]string{"version", "resumed"}, nil)
	m.tlsByKind = prometheus.NewDesc("meshgate_tls_handshakes_by_kind_total",
		"Completed TLS handshakes by resumption kind (session_id: the TLS 1.2 session-ID path; tls12_ticket: crypto/tls TLS 1.2; tls13_psk: TLS 1.3) and whether they resumed.",
		[]string{"kind", "resumed"}, nil)
	d("peer_violations_total", "Items an authenticated peer sent that were refused (forged ticket keys, poisoned records), by the peer's certificate name and reason.", "peer", "reason")
	d("remote_lookups_limited_total", "Remote session lookups refused: a second identity of one handshake, or a client address that kept offering ids no replica holds.", "reason")
	d("ticket_keys_retired_total", "Ticket keys this node retired because a revocation of everything issued before a time reached it (admin API).")
	d("ticket_rings_full_total", "TicketKeys hosts configured onto the default key ring (and its rotation) because the rings per policy were all taken.")
	d("revoked_total", "Sessions revoked on this node (Revoke, RevokeBefore, the admin API); each is broadcast to every peer.")
	d("wraps_total", "Sessions issued, by session mode (SessionID: TLS 1.2 session IDs of ticketless clients).", "mode")
	d("session_id_hits_total", "TLS 1.2 sessions resumed by session ID (ticketless clients).")
	d("early_data_total", "Resumed sessions that invited 0-RTT early data, by result: accepted (the issuing replica, first use) or refused (used before, another replica, or TicketKeys mode).", "result")
	d("rewraps_total", "TLS 1.2 re-wraps of a just-resumed session answered from the store, without storing or replicating it again.")
	d("remote_lookups_total", "Point lookups sent to an issuing peer on a local miss.")
	d("remote_lookup_hits_total", "Point lookups answered with the session.")
	return m
}

// maxViolationPeers bounds the peer label of peer_violations_total: names
// come from certificates, and a holder of the CA key can mint any number.
const maxViolationPeers = 256

// violations counts refused items by peer and reason.
type violations struct {
	mu    sync.Mutex
	n     map[[2]string]uint64
	peers map[string]bool
}

// violation counts one item peer sent that was refused for reason. Past
// maxViolationPeers distinct names, new names count as peer "other".
func (m *metrics) violation(peer, reason string) {
	v := &m.violations
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.n == nil {
		v.n, v.peers = make(map[[2]string]uint64), make(map[string]bool)
	}
	if !v.peers[peer] {
		if len(v.peers) >= maxViolationPeers {
			peer = "other"
		}
		v.peers[peer] = true
	}
	v.n[[2]string{peer, reason}]++
}

// violationCounts returns a copy of the counts as peer → reason → count.
func (m *metrics) violationCounts() map[string]map[string]uint64 {
	v := &m.violations
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]map[string]uint64, len(v.peers))
	for k, n := range v.n {
		if out[k[0]] == nil {
			out[k[0]] = make(map[string]uint64)
		}
		out[k[0]][k[1]] = n
	}
	return out
}

func (m *metrics) hit(v uint16)                       { m.hits[versionIdx(v)].Add(1) }
func (m *metrics) miss(r int)                         { m.misses[r].Add(1) }
func (m *metrics) observeReplication(d time.Duration) { m.latency.Observe(d.Seconds()) }

// handshake counts one completed handshake: the only place handshakes are
// counted, for every TLS server of the data plane.
func (m *metrics) handshake(v uint16, resumed bool, kind int) {
	r := 0
	if resumed {
		r = 1
		m.resumed[versionIdx(v)].Add(1)
	} else {
		m.full[versionIdx(v)].Add(1)
	}
	m.byKind[kind][r].Add(1)
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
	ch <- m.tlsHandshakes
	ch <- m.tlsByKind
	m.latency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	c := func(name string, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.descs[name], t, v, labels...)
	}
	gauge, counter := prometheus.GaugeValue, prometheus.CounterValue
	st := m.n.store.Stats()
	c("records", gauge, float64(st.Records))
	c("store_bytes", gauge, float64(st.Bytes))
	c("evictions_total", counter, float64(st.Evicted))
	ready := 0.0
	if m.n.Ready() == nil {
		ready = 1
	}
	c("ready", gauge, ready)
	if m.n.state != nil {
		for _, z := range m.n.state.Stats() {
			c("zone_records", gauge, float64(z.Records), z.Name)
			c("zone_tombstones", gauge, float64(z.Tombs), z.Name)
			c("zone_bytes", gauge, float64(z.Bytes), z.Name)
			c("zone_evictions_total", counter, float64(z.Evictions), z.Name)
			c("zone_stale_writes_total", counter, float64(z.Stale), z.Name)
		}
	}
	if m.n.mesh != nil && m.n.state != nil {
		ms := m.n.mesh.Status()
		online := 0
		for _, p := range ms.Peers {
			c("zone_pending", gauge, float64(p.KVPending), p.Addr)
			if p.State == mesh.StateOnline && p.Version >= 3 {
				online++
			}
		}
		c("zone_drops_total", counter, float64(ms.KVDrops))
		c("zone_nodes_online", gauge, float64(online))
	}
	if m.n.mesh != nil {
		ms := m.n.mesh.Status()
		c("peers_online", gauge, float64(ms.PeersOnline))
		for _, p := range ms.Peers {
			label := p.Addr
			c("records_pending", gauge, float64(p.Pending), label)
			c("peer_drops_total", counter, float64(p.Drops), label)
		}
		c("bytes_in_total", counter, float64(ms.BytesIn))
		c("bytes_out_total", counter, float64(ms.BytesOut))
		c("messages_in_total", counter, float64(ms.MsgsIn))
		c("messages_out_total", counter, float64(ms.MsgsOut))
		c("drops_total", counter, float64(ms.Drops))
		for _, r := range mesh.RejectReasons() {
			c("rejected_connections_total", counter, float64(ms.Rejected[r]), r)
		}
	}
	for i, name := range versionNames {
		c("resumption_hits_total", counter, float64(m.hits[i].Load()), name)
		c("handshakes_total", counter, float64(m.full[i].Load()), name, "full")
		c("handshakes_total", counter, float64(m.resumed[i].Load()), name, "resumed")
		ch <- prometheus.MustNewConstMetric(m.tlsHandshakes, counter, float64(m.full[i].Load()), name, "false")
		ch <- prometheus.MustNewConstMetric(m.tlsHandshakes, counter, float64(m.resumed[i].Load()), name, "true")
	}
	for i, name := range kindNames {
		ch <- prometheus.MustNewConstMetric(m.tlsByKind, counter, float64(m.byKind[i][0].Load()), name, "false")
		ch <- prometheus.MustNewConstMetric(m.tlsByKind, counter, float64(m.byKind[i][1].Load()), name, "true")
	}
	for i, name := range missNames {
		c("resumption_misses_total", counter, float64(m.misses[i].Load()), name)
	}
	for i, name := range modeNames {
		c("wraps_total", counter, float64(m.wraps[i].Load()), name)
	}
	for peer, reasons := range m.violationCounts() {
		for reason, n := range reasons {
			c("peer_violations_total", counter, float64(n), peer, reason)
		}
	}
	c("revoked_total", counter, float64(m.revoked.Load()))
	c("ticket_rings_full_total", counter, float64(m.ringsFull.Load()))
	c("ticket_keys_retired_total", counter, float64(m.keysRetired.Load()))
	for i, name := range limitNames {
		c("remote_lookups_limited_total", counter, float64(m.limited[i].Load()), name)
	}
	c("rewraps_total", counter, float64(m.rewraps.Load()))
	c("early_data_total", counter, float64(m.early[0].Load()), "refused")
	c("early_data_total", counter, float64(m.early[1].Load()), "accepted")
	c("session_id_hits_total", counter, float64(m.sessionIDHits.Load()))
	c("remote_lookups_total", counter, float64(m.remoteLookups.Load()))
	c("remote_lookup_hits_total", counter, float64(m.remoteHits.Load()))
	m.latency.Collect(ch)
}

// Status is the JSON document served by StatusHandler.
type Status struct {
	Node      string            `json:"node"`
	ClusterID string            `json:"cluster_id"`
	Ready     bool              `json:"ready"`
	Store     store.Stats       `json:"store"`
	Mesh      *mesh.Status      `json:"mesh,omitempty"`
	Hits      map[string]uint64 `json:"resumption_hits"`
	Misses    map[string]uint64 `json:"resumption_misses"`
	Full      map[string]uint64 `json:"full_handshakes"`
	Resumed   map[string]uint64 `json:"resumed_handshakes"`
	Wraps     map[string]uint64 `json:"wraps"`
	Remote    [2]uint64         `json:"remote_lookups_and_hits"`
	// Violations counts refused peer items: peer → reason → count.
	Violations map[string]map[string]uint64 `json:"peer_violations"`
	TicketKey  struct {
		Keys   int    `json:"keys"`  // of every ring
		Rings  int    `json:"rings"` // one per TicketKeys policy, and the default one
		Leader string `json:"leader"`
	} `json:"ticket_keys"`
	// Trust is the mesh CA material in force (nil without a CA): a CA
	// rotation's next step waits until every replica shows the current
	// step's generation.
	Trust *TrustStatus `json:"trust,omitempty"`
}

// TrustStatus describes the mesh CA material a node uses (fingerprints
// only, never keys).
type TrustStatus struct {
	Generation string    `json:"generation"`
	Phase      pki.Phase `json:"phase"`
	Signing    string    `json:"signing_ca"`
	Trusted    []string  `json:"trusted_cas"`
}

// Status returns the node's current status.
func (n *Node) Status() Status {
	m := n.m
	st := Status{Node: n.cfg.NodeName, ClusterID: n.cfg.ClusterID, Ready: n.Ready() == nil,
		Store: n.store.Stats(), Hits: map[string]uint64{}, Misses: map[string]uint64{},
		Full: map[string]uint64{}, Resumed: map[string]uint64{}, Wraps: map[string]uint64{},
		Remote:     [2]uint64{m.remoteLookups.Load(), m.remoteHits.Load()},
		Violations: m.violationCounts()}
	if n.mesh != nil {
		ms := n.mesh.Status()
		st.Mesh = &ms
	}
	for i, v := range versionNames {
		st.Hits[v], st.Full[v], st.Resumed[v] = m.hits[i].Load(), m.full[i].Load(), m.resumed[i].Load()
	}
	for i, r := range missNames {
		st.Misses[r] = m.misses[i].Load()
	}
	for i, r := range modeNames {
		st.Wraps[r] = m.wraps[i].Load()
	}
	if n.cfg.Identity != nil {
		b := n.cfg.Identity.Current()
		st.Trust = &TrustStatus{Generation: b.Generation(), Phase: b.Phase(),
			Signing: b.Signing().Fingerprint(), Trusted: b.Trusted()}
	}
	for _, r := range n.tickets.all() {
		ring := r.ring.Load()
		st.TicketKey.Keys += len(ring.keys)
		st.TicketKey.Rings++
		if r.name == "" {
			st.TicketKey.Leader = ring.leader
		}
	}
	return st
}

// StatusHandler serves Status as JSON (for /status/sessionmesh). It never
// includes session state or key material.
func (n *Node) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(n.Status())
	})
}
