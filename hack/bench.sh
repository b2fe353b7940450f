#!/usr/bin/env bash
# hack/bench.sh — what `make bench` runs: meshgate side by side with nginx in
# one run, results written to docs/benchmarks.md and
# docs/benchmarks-resumption.svg by test/bench (see its doc comment for the
# scenarios). Bounded: about 12 minutes with a baseline side, hard limit 21
# (BENCH_TIMEOUT), then up to 20 more for the L4 and in-process benchmarks.
#
# Environment: BIN (default ./bin; binaries are built when missing),
# BENCH_ARGS (extra flags for test/bench, e.g. "--duration 4s --matrix-duration 1s"),
# BENCH_BASELINE (a git revision: meshgate built from it runs as a third
# side of the keep-alive figures and of the round-robin matrix, for
# before/after tables).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BIN=${BIN:-$root/bin}
"$root/hack/install-deps.sh"
for b in meshgate:./cmd/meshgate echo-backend:./test/echo; do
  [ -x "$BIN/${b%%:*}" ] || go build -o "$BIN/${b%%:*}" "${b#*:}"
done
go build -o "$BIN/bench" ./test/bench
baseline=()
if [ -n "${BENCH_BASELINE:-}" ]; then
  src=$(mktemp -d)
  git archive "$BENCH_BASELINE" | tar -x -C "$src"
  (cd "$src" && go build -o "$BIN/meshgate-baseline" ./cmd/meshgate)
  rm -rf "$src"
  baseline=(--baseline "$BIN/meshgate-baseline" --baseline-label "$(git rev-parse --short "$BENCH_BASELINE")")
fi
# shellcheck disable=SC2086 # BENCH_ARGS is a flag list
timeout --signal=TERM --kill-after=30s "${BENCH_TIMEOUT:-21m}" \
  "$BIN/bench" --bin "$BIN" --commit "$(git rev-parse --short HEAD)" --out docs/benchmarks.md --svg docs/benchmarks-resumption.svg "${baseline[@]}" ${BENCH_ARGS:-}

# The L4 proxy against nginx's stream module, and the in-process Go
# benchmarks, appended to the same document from the same run.
{
  echo
  echo "## 5. L4 proxying: meshgate vs nginx stream module"
  echo
  echo 'From `hack/bench-l4.sh 3` (TCP throughput and UDP ping-pong, direct / meshgate / nginx, alternating rounds).'
  echo
  L4BENCH_ROUNDS=2 timeout 300 "$root/hack/bench-l4.sh" 3 || echo "(bench-l4.sh failed in this run: exit $?)"
  echo
  echo "## 6. In-process benchmarks (go test -bench)"
  echo
  echo 'From `hack/bench-go.sh`. Targets: ≤ 300 B per cached session; cross-replica resumed handshake CPU ≤ 1.05× same-replica;'
  echo '≥ 200k mesh inserts/s per node; insert-to-peer p99 < 1 ms at 10k inserts/s; 10k-Ingress rebuild < 1 s;'
  echo '≤ 2 allocations per proxied HTTP/1.1 request (BenchmarkProxyH1: client, engine, proxy and a canned backend in one process, so ns/op counts all three).'
  echo 'Client and server share the 2 CPUs in the handshake benchmarks, so cpu-µs/op counts both sides.'
  echo
  timeout 900 "$root/hack/bench-go.sh" || echo "(bench-go.sh failed in this run: exit $?)"
} >>docs/benchmarks.md
echo "bench: wrote docs/benchmarks.md" >&2
