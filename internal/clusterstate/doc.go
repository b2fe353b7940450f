// Package clusterstate holds runtime state that every replica of a
// cluster shares (NGINX Plus zone_sync's equivalent): named key-value zones
// with a TTL per entry, bounded memory per zone and counted evictions,
// merged last-writer-wins so that replicas converge whatever the order in
// which writes reach them. The session mesh carries the entries (protocol
// version 3); see docs/clusterstate.md.
package clusterstate
