#!/usr/bin/env bash
# bench-l4.sh — meshgate's L4 proxy side by side with nginx's stream module
# on 127.0.0.1: TCP throughput (MB/s) and UDP request/response datagrams/s,
# each direct to the backend, through meshgate and through nginx, with the
# proxy's CPU time (ticks of 10 ms, from /proc) for each run.
#
# Usage: hack/bench-l4.sh [seconds per run, default 5]
# Env:   L4BENCH_PORT_BASE (default 19000), L4BENCH_TCP_CONNS (2),
#        L4BENCH_UDP_CLIENTS (4), L4BENCH_ROUNDS (3, order alternates),
#        NGINX_WORKERS (default: nproc).
set -euo pipefail

cd "$(dirname "$0")/.."
DUR="${1:-5}"
BASE="${L4BENCH_PORT_BASE:-19000}"
CONNS="${L4BENCH_TCP_CONNS:-2}"
CLIENTS="${L4BENCH_UDP_CLIENTS:-4}"
WORKERS="${NGINX_WORKERS:-$(nproc)}"
ROUNDS="${L4BENCH_ROUNDS:-3}"
STREAM_MOD=/usr/lib/nginx/modules/ngx_stream_module.so

if ! command -v nginx >/dev/null || [ ! -f "$STREAM_MOD" ]; then
	echo "installing nginx + stream module (Debian packages)" >&2
	apt-get install -y nginx libnginx-mod-stream >/dev/null
fi

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

go build -o "$TMP/l4bench" ./internal/dataplane/l4/internal/l4bench

BE_TCP=$BASE BE_UDP=$((BASE + 1))
MG_TCP=$((BASE + 10)) MG_UDP=$((BASE + 11))
NG_TCP=$((BASE + 20)) NG_UDP=$((BASE + 21))

"$TMP/l4bench" backends -tcp "127.0.0.1:$BE_TCP" -udp "127.0.0.1:$BE_UDP" &
PIDS+=($!)
"$TMP/l4bench" proxy -tcp-port "$MG_TCP" -tcp-backend "127.0.0.1:$BE_TCP" \
	-udp-port "$MG_UDP" -udp-backend "127.0.0.1:$BE_UDP" &
MG_PID=$!
PIDS+=("$MG_PID")

cat >"$TMP/nginx.conf" <<CONF
load_module $STREAM_MOD;
worker_processes $WORKERS;
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx-error.log warn;
events { worker_connections 4096; }
stream {
	server { listen 127.0.0.1:$NG_TCP; proxy_pass 127.0.0.1:$BE_TCP; }
	server { listen 127.0.0.1:$NG_UDP udp; proxy_pass 127.0.0.1:$BE_UDP; proxy_timeout 60s; }
}
CONF
nginx -c "$TMP/nginx.conf" -p "$TMP" &
NG_PID=$!
PIDS+=("$NG_PID")

# Wait (bounded) for every listener.
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$MG_TCP") 2>/dev/null && (exec 3<>"/dev/tcp/127.0.0.1/$NG_TCP") 2>/dev/null; then
		break
	fi
	sleep 0.1
done

# cpu_ticks PID: utime+stime of PID and its direct children (nginx workers).
cpu_ticks() {
	local total=0 p
	for p in "$1" $(ps -o pid= --ppid "$1" 2>/dev/null); do
		if [ -r "/proc/$p/stat" ]; then
			total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
		fi
	done
	echo "$total"
}

ticks() { if [ "$1" = - ]; then echo 0; else cpu_ticks "$1"; fi; }

run() { # name pid tcp-port udp-port
	local name=$1 pid=$2 t0 t1 t2 tcp udp
	t0=$(ticks "$pid")
	tcp=$("$TMP/l4bench" tcp -addr "127.0.0.1:$3" -duration "${DUR}s" -conns "$CONNS")
	t1=$(ticks "$pid")
	udp=$("$TMP/l4bench" udp -addr "127.0.0.1:$4" -duration "${DUR}s" -clients "$CLIENTS")
	t2=$(ticks "$pid")
	printf '| %5s | %-8s | %8s | %9s | %12s | %6s | %9s |\n' "$round" "$name" \
		"$(sed 's/.*MB\/s=//' <<<"$tcp")" "$((t1 - t0))" \
		"$(sed 's/.*datagrams\/s=\([0-9]*\).*/\1/' <<<"$udp")" \
		"$(sed 's/.*lost=//' <<<"$udp")" "$((t2 - t1))"
}

echo "L4 proxy benchmark: ${DUR}s per run, $ROUNDS rounds, $CONNS TCP conns, $CLIENTS UDP clients (ping-pong, 64 B),"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///') workers=$WORKERS, $(nproc) CPUs. CPU = proxy ticks (10 ms) during that run."
echo
echo "| round | target   | TCP MB/s | TCP CPU   | UDP dgrams/s | lost   | UDP CPU   |"
echo "|-------|----------|----------|-----------|--------------|--------|-----------|"
for round in $(seq "$ROUNDS"); do
	run direct - "$BE_TCP" "$BE_UDP"
	if [ $((round % 2)) = 1 ]; then
		run meshgate "$MG_PID" "$MG_TCP" "$MG_UDP"
		run nginx "$NG_PID" "$NG_TCP" "$NG_UDP"
	else
		run nginx "$NG_PID" "$NG_TCP" "$NG_UDP"
		run meshgate "$MG_PID" "$MG_TCP" "$MG_UDP"
	fi
done
