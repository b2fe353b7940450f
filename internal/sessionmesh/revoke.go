package sessionmesh

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/meshgate/meshgate/internal/sessionmesh/store"
	"github.com/meshgate/meshgate/internal/sessionmesh/wire"
)

// Revocation reaches every replica through the mesh: the node that revokes
// stores a tombstone and broadcasts it; tombstones are never dropped from a
// peer's queue and travel in snapshots, so a replica that joins later gets
// them too (docs/sessionmesh.md, Revocation).

// RevokeBefore revokes, cluster-wide, every session this node holds that
// was issued before t (by its issuer's clock), the response to a
// compromise: a leaked session store, a replica's memory, a ticket key. It
// also retires every ticket key created before t (RetireTicketKeys), which
// ends the TicketKeys tickets issued before t. It returns how many
// records it revoked. Sessions this node does not hold (an oversized state,
// a record it never received) are not revoked; every replica holds every
// replicated session, so one call on any replica covers the cluster.
func (n *Node) RevokeBefore(t time.Time) int {
	now := time.Now()
	var ts []wire.Tombstone
	n.store.Range(now, func(r store.Record) bool {
		if r.Created < t.UnixNano() {
			ts = append(ts, wire.Tombstone{Key: r.Key, Expires: r.Expires})
		}
		return true
	})
	for _, tb := range ts {
		n.store.Delete(tb.Key, tb.Expires, now)
		if n.mesh != nil {
			n.mesh.Delete(tb)
		}
	}
	n.m.revoked.Add(uint64(len(ts)))
	n.RetireTicketKeys(t) // TicketKeys tickets have no record: retire their keys
	return len(ts)
}

// RevokeRequest is the body of a revocation request (RevokeHandler): IDs,
// IssuedBefore, or both.
type RevokeRequest struct {
	// IDs are session ids (a stateful ticket's identity or a TLS 1.2
	// session ID), base64 (standard or URL alphabet, padded or not).
	IDs []string `json:"ids,omitempty"`
	// IssuedBefore revokes every session issued before it (RFC 3339).
	IssuedBefore *time.Time `json:"issued_before,omitempty"`
}

// RevokeResponse is what RevokeHandler answers.
type RevokeResponse struct {
	// Revoked counts sessions revoked: ids accepted plus sessions issued
	// before IssuedBefore.
	Revoked int `json:"revoked"`
	// Invalid lists the ids that are not session ids of this cluster.
	Invalid []string `json:"invalid,omitempty"`
}

// maxRevokeBody bounds a revocation request.
const maxRevokeBody = 1 << 20

// RevokeHandler serves revocation requests (POST, JSON RevokeRequest) and
// answers a RevokeResponse. It does no authentication: the caller mounts
// it behind one (replica: a bearer token on the admin listener).
func (n *Node) RevokeHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST a JSON revocation request", http.StatusMethodNotAllowed)
			return
		}
		var req RevokeRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxRevokeBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, fmt.Sprintf("bad revocation request: %v", err), http.StatusBadRequest)
			return
		}
		if len(req.IDs) == 0 && req.IssuedBefore == nil {
			http.Error(w, `bad revocation request: give "ids" or "issued_before"`, http.StatusBadRequest)
			return
		}
		var resp RevokeResponse
		for _, s := range req.IDs {
			id, err := decodeID(s)
			if err != nil || !n.Revoke(id) {
				resp.Invalid = append(resp.Invalid, s)
				continue
			}
			resp.Revoked++
		}
		if req.IssuedBefore != nil {
			resp.Revoked += n.RevokeBefore(*req.IssuedBefore)
		}
		n.cfg.Log.Info("sessions revoked", "revoked", resp.Revoked, "invalid", len(resp.Invalid),
			"issuedBefore", req.IssuedBefore, "remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

// decodeID accepts base64 in either alphabet, with or without padding.
func decodeID(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("not base64")
}
