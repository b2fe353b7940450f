#!/usr/bin/env bash
# hack/bench.sh — what `make bench` runs: meshgate side by side with nginx in
# one run, results written to docs/benchmarks.md and
# docs/benchmarks-resumption.svg by test/bench (see its doc comment for the
# scenarios). Bounded: about 5 minutes, hard limit 15 (BENCH_TIMEOUT).
#
# Environment: BIN (default ./bin; binaries are built when missing),
# BENCH_ARGS (extra flags for test/bench, e.g. "--duration 4s --conns 1200").
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BIN=${BIN:-$root/bin}
"$root/hack/install-deps.sh"
for b in meshgate:./cmd/meshgate echo-backend:./test/echo; do
  [ -x "$BIN/${b%%:*}" ] || go build -o "$BIN/${b%%:*}" "${b#*:}"
done
go build -o "$BIN/bench" ./test/bench
# shellcheck disable=SC2086 # BENCH_ARGS is a flag list
exec timeout --signal=TERM --kill-after=30s "${BENCH_TIMEOUT:-15m}" \
  "$BIN/bench" --bin "$BIN" --out docs/benchmarks.md --svg docs/benchmarks-resumption.svg ${BENCH_ARGS:-}
