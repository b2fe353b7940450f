#!/usr/bin/env bash
# bench-go.sh — meshgate's in-process benchmarks (go test -bench), printed as
# a Markdown section for docs/benchmarks.md: session store bytes per
# session, cross-replica vs same-replica resumed handshake CPU, full vs
# resumed handshakes, zero-think-time resumption, mesh inserts/s and
# insert-to-peer latency, routing table rebuild for 10k Ingresses, routing
# lookups, the HTTP/1.1 engine and the proxied request path (allocations
# per request). Every figure comes from this run; custom metrics are the
# benchmarks' own b.ReportMetric units.
set -euo pipefail
cd "$(dirname "$0")/.."

run() { # package, -bench regexp, benchtime
  go test -run '^$' -count=1 -bench "$2" -benchtime "$3" -benchmem "$1" 2>&1 |
    grep -E '^Benchmark' || echo "FAILED $1 $2"
}

{
  run ./internal/sessionmesh/store 'StoreMemory|Get$' 1x
  run ./internal/sessionmesh 'Handshake|UnwrapLocal' 200x
  run ./internal/sessionmesh 'ZeroThinkTime' 1000x
  run ./internal/tls12 'ServerHandshake' 1s
  run ./internal/sessionmesh/mesh 'InsertThroughput' 300000x
  run ./internal/sessionmesh/mesh 'ReplicationLatency' 2x
  run ./internal/translate 'Build10k' 3x
  run ./internal/routing 'Match|TLSLookup' 1s
  run ./internal/dataplane/http1 'ServeKeepAlive' 20000x
  run ./internal/dataplane/proxy 'ProxyH1|HandlerHTTP|NotFound' 20000x
  run ./internal/dataplane/proxy 'LimitStage' 200000x
  run ./internal/sessionmesh 'LimiterMeshBytes' 1x
} >"${TMPDIR:-/tmp}/meshgate-bench-go.txt"

echo "| benchmark | iterations | ns/op | other metrics (this run) |"
echo "|---|---|---|---|"
awk '/^FAILED/ { print "| " $0 " | | | |"; next }
{
  name=$1; iters=$2; nsop=""; rest=""
  for (i = 3; i < NF; i += 2) {
    if ($(i+1) == "ns/op") nsop=$i; else rest = rest (rest == "" ? "" : ", ") $i " " $(i+1)
  }
  print "| `" name "` | " iters " | " nsop " | " rest " |"
}' "${TMPDIR:-/tmp}/meshgate-bench-go.txt"
