package admin

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshgate/meshgate/internal/clusterstate"
)

// KVPrefix is the path under which KVHandler serves the key-value API.
const KVPrefix = "/api/kv"

// KVZone is how the key-value API treats one zone of the store.
type KVZone struct {
	// Name is the zone's name in the store; required.
	Name string
	// TTL is the lifetime of a PUT that gives no ttl parameter, the
	// longest one a PUT may ask for, and how long a DELETE's tombstone is
	// kept (so it outlives every write it deletes). Zero means
	// DefaultKVTTL.
	TTL time.Duration
	// Key, if set, checks a key of this zone and returns its canonical
	// form (the deny list's addresses and prefixes), under which the
	// entry is stored, read and deleted. An error is a 400.
	Key func(string) (string, error)
}

// DefaultKVTTL is a zone's TTL when KVZone.TTL is zero.
const DefaultKVTTL = 24 * time.Hour

// KVConfig configures KVHandler.
type KVConfig struct {
	// Store holds the zones; required.
	Store *clusterstate.Store
	// Zones are the zones served (each must exist in Store); requests
	// for others are 404.
	Zones []KVZone
	// Registerer receives meshgate_kv_api_requests_total; nil registers
	// nothing.
	Registerer prometheus.Registerer
	// Log receives one line per write (zone, key, remote address; never
	// the value); the zero value discards.
	Log logr.Logger
}

// KVHandler serves the key-value API (docs/clusterstate.md):
//
//	GET    /api/kv                  zones and their figures (JSON)
//	GET    /api/kv/<zone>           the zone's live entries (JSON)
//	GET    /api/kv/<zone>/<key>     the value (raw bytes), Meshgate-Expires header
//	PUT    /api/kv/<zone>/<key>     body = value; ?ttl=30s|30 (at most the zone's TTL)
//	DELETE /api/kv/<zone>/<key>     204; the deletion reaches every replica
//
// Keys may contain "/" (a CIDR is a key of the deny list). Writes go
// through the store, which replicates them to every peer. Keys are at
// most clusterstate.MaxKeyLen bytes and values clusterstate.MaxValueLen
// (413 beyond). Errors are JSON (ErrorBody). The handler does no
// authentication: mount it behind RequireBearer. It is safe for
// concurrent use.
type KVHandler struct {
	cfg      KVConfig
	zones    map[string]*KVZone
	requests *prometheus.CounterVec
}

// NewKVHandler checks cfg and builds the handler.
func NewKVHandler(cfg KVConfig) (*KVHandler, error) {
	if cfg.Store == nil {
		return nil, errors.New("admin: KVConfig.Store is required")
	}
	h := &KVHandler{cfg: cfg, zones: make(map[string]*KVZone, len(cfg.Zones))}
	for i := range cfg.Zones {
		z := &cfg.Zones[i]
		if _, err := cfg.Store.Changed(z.Name); err != nil {
			return nil, fmt.Errorf("admin: key-value zone: %w", err)
		}
		if z.TTL <= 0 {
			z.TTL = DefaultKVTTL
		}
		h.zones[z.Name] = z
	}
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "meshgate", Subsystem: "kv_api", Name: "requests_total",
		Help: "Requests of the key-value API (/api/kv) by method and status code.",
	}, []string{"method", "code"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(h.requests); err != nil {
			return nil, fmt.Errorf("admin: register key-value API metrics: %w", err)
		}
	}
	return h, nil
}

// ServeHTTP implements http.Handler.
func (h *KVHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	h.serve(sw, r)
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodPut, http.MethodDelete, http.MethodHead:
	default:
		method = "other" // bounded label values
	}
	h.requests.WithLabelValues(method, strconv.Itoa(sw.code)).Inc()
}

func (h *KVHandler) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, KVPrefix)
	if !ok || (rest != "" && rest[0] != '/') {
		WriteError(w, http.StatusNotFound, "not found")
		return
	}
	rest = strings.TrimPrefix(rest, "/")
	zoneName, key, hasKey := strings.Cut(rest, "/")
	if zoneName == "" {
		h.method(w, r, "GET", h.listZones)
		return
	}
	z := h.zones[zoneName]
	if z == nil {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no key-value zone %q", zoneName))
		return
	}
	if !hasKey || key == "" {
		h.method(w, r, "GET", func(w http.ResponseWriter, _ *http.Request) { h.listZone(w, z) })
		return
	}
	if len(key) > clusterstate.MaxKeyLen {
		WriteError(w, http.StatusBadRequest, fmt.Sprintf("key of %d bytes (at most %d)", len(key), clusterstate.MaxKeyLen))
		return
	}
	if z.Key != nil {
		canon, err := z.Key(key)
		if err != nil {
			WriteError(w, http.StatusBadRequest, fmt.Sprintf("key %q of zone %s: %v", key, z.Name, err))
			return
		}
		key = canon
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		h.get(w, z, key)
	case http.MethodPut:
		h.put(w, r, z, key)
	case http.MethodDelete:
		h.delete(w, r, z, key)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	}
}

// method serves fn for GET (and HEAD) only.
func (h *KVHandler) method(w http.ResponseWriter, r *http.Request, allow string, fn http.HandlerFunc) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", allow)
		WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
		return
	}
	fn(w, r)
}

// KVZoneInfo is one zone in the answer of GET /api/kv.
type KVZoneInfo struct {
	Name       string `json:"name"`
	TTL        string `json:"ttl"`
	Records    int    `json:"records"`
	Tombstones int    `json:"tombstones"`
	Bytes      int64  `json:"bytes"`
	Evictions  uint64 `json:"evictions"`
}

func (h *KVHandler) listZones(w http.ResponseWriter, _ *http.Request) {
	out := struct {
		Zones []KVZoneInfo `json:"zones"`
	}{Zones: []KVZoneInfo{}}
	for _, st := range h.cfg.Store.Stats() {
		z := h.zones[st.Name]
		if z == nil {
			continue
		}
		out.Zones = append(out.Zones, KVZoneInfo{Name: st.Name, TTL: z.TTL.String(), Records: st.Records,
			Tombstones: st.Tombs, Bytes: st.Bytes, Evictions: st.Evictions})
	}
	writeJSON(w, http.StatusOK, out)
}

// KVEntryInfo is one entry in the answer of GET /api/kv/<zone>: Value when
// the value is UTF-8, ValueBase64 otherwise.
type KVEntryInfo struct {
	Key         string    `json:"key"`
	Value       *string   `json:"value,omitempty"`
	ValueBase64 string    `json:"value_base64,omitempty"`
	Expires     time.Time `json:"expires"`
}

func (h *KVHandler) listZone(w http.ResponseWriter, z *KVZone) {
	entries := []KVEntryInfo{}
	_ = h.cfg.Store.RangeZone(z.Name, func(e clusterstate.Entry) bool {
		ei := KVEntryInfo{Key: e.Key, Expires: time.Unix(0, e.Expires).UTC()}
		if utf8.Valid(e.Value) {
			v := string(e.Value)
			ei.Value = &v
		} else {
			ei.ValueBase64 = base64.StdEncoding.EncodeToString(e.Value)
		}
		entries = append(entries, ei)
		return true
	})
	sort.Slice(entries, func(i, j int) bool { return entries[i].Key < entries[j].Key })
	writeJSON(w, http.StatusOK, struct {
		Zone    string        `json:"zone"`
		TTL     string        `json:"ttl"`
		Entries []KVEntryInfo `json:"entries"`
	}{z.Name, z.TTL.String(), entries})
}

// ExpiresHeader carries an entry's expiry (RFC 3339) on GET and PUT.
const ExpiresHeader = "Meshgate-Expires"

func (h *KVHandler) get(w http.ResponseWriter, z *KVZone, key string) {
	e, ok, err := h.cfg.Store.Get(z.Name, key)
	if err != nil {
		WriteError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !ok {
		WriteError(w, http.StatusNotFound, fmt.Sprintf("no key %q in zone %s", key, z.Name))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(e.Value)))
	w.Header().Set(ExpiresHeader, time.Unix(0, e.Expires).UTC().Format(time.RFC3339Nano))
	_, _ = w.Write(e.Value)
}

// KVWriteResult is the answer to a PUT.
type KVWriteResult struct {
	Zone    string    `json:"zone"`
	Key     string    `json:"key"`
	Expires time.Time `json:"expires"`
	Version int64     `json:"version"`
}

func (h *KVHandler) put(w http.ResponseWriter, r *http.Request, z *KVZone, key string) {
	ttl, err := parseTTL(r.URL.Query().Get("ttl"), z.TTL)
	if err != nil {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, clusterstate.MaxValueLen))
	if err != nil {
		if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
			WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("value over %d bytes", clusterstate.MaxValueLen))
			return
		}
		WriteError(w, http.StatusBadRequest, "reading the value: "+err.Error())
		return
	}
	e, err := h.cfg.Store.Put(z.Name, key, value, ttl)
	if err != nil {
		h.writeFailed(w, err)
		return
	}
	h.cfg.Log.Info("key-value write", "zone", z.Name, "key", key, "ttl", ttl.String(), "remote", r.RemoteAddr)
	exp := time.Unix(0, e.Expires).UTC()
	w.Header().Set(ExpiresHeader, exp.Format(time.RFC3339Nano))
	writeJSON(w, http.StatusOK, KVWriteResult{Zone: z.Name, Key: key, Expires: exp, Version: e.Version})
}

func (h *KVHandler) delete(w http.ResponseWriter, r *http.Request, z *KVZone, key string) {
	if _, err := h.cfg.Store.Delete(z.Name, key, z.TTL); err != nil {
		h.writeFailed(w, err)
		return
	}
	h.cfg.Log.Info("key-value delete", "zone", z.Name, "key", key, "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

// writeFailed maps a store write error: invalid input is 400, a newer
// write held for the key (a peer's clock ahead of ours) is 409.
func (h *KVHandler) writeFailed(w http.ResponseWriter, err error) {
	if errors.Is(err, clusterstate.ErrInvalid) {
		WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	WriteError(w, http.StatusConflict, err.Error())
}

// parseTTL reads the ttl parameter: a Go duration ("90s", "10m") or whole
// seconds; empty means max. It must be positive and at most max.
func parseTTL(s string, max time.Duration) (time.Duration, error) {
	if s == "" {
		return max, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseInt(s, 10, 64)
		if nerr != nil || n > int64(max/time.Second)+1 {
			return 0, fmt.Errorf("ttl %q: a duration (90s, 10m) or whole seconds", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > max {
		return 0, fmt.Errorf("ttl %v: must be positive and at most the zone's %v", d, max)
	}
	return d, nil
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}
