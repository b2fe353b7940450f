#!/usr/bin/env bash
# hack/profile.sh — profile meshgate's data plane under load, side by side
# with nginx (test/perf): h2load keep-alive HTTP/1.1 and HTTP/2, openssl
# s_time resumed and full TLS 1.2 handshakes, alternating servers in rounds
# so a shared machine's load swings hit every side. Prints rate and server
# CPU ticks per unit of work; with PROFILE_DIR set, saves a CPU profile of
# meshgate (via its opt-in --pprof-addr) for each meshgate round. Scenario
# "mesh" (not in the default list) runs test/bench's headline load on three
# replicas with the session mesh behind HAProxy and profiles each replica.
#
#   hack/profile.sh                                  # all scenarios
#   PROFILE_DIR=/tmp/prof hack/profile.sh --scenarios reuse
#   go tool pprof -top bin/meshgate /tmp/prof/reuse-0.pprof
#
# Compare two builds in the same run: --baseline path/to/old/meshgate.
# Environment: BIN (default ./bin; built when missing). Extra arguments go
# to test/perf (see `go run ./test/perf -h`).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BIN=${BIN:-$root/bin}
for b in meshgate:./cmd/meshgate echo-backend:./test/echo; do
  [ -x "$BIN/${b%%:*}" ] || go build -o "$BIN/${b%%:*}" "${b#*:}"
done
args=(--bin "$BIN" --scenarios h1,h2,reuse,new --rounds 3 --duration 5s)
[ -n "${PROFILE_DIR:-}" ] && args+=(--profile "$PROFILE_DIR")
exec timeout --signal=TERM --kill-after=30s 20m go run ./test/perf "${args[@]}" "$@"
