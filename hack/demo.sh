#!/usr/bin/env bash
# hack/demo.sh — three meshgate replicas sharing TLS sessions on one machine.
#
# What `make demo` runs after building bin/meshgate and bin/echo-backend.
# Starts, all on loopback:
#   echo backend      127.0.0.1:9000 (HTTP/1.1, h2c, WebSocket /ws), UDP echo 127.0.0.1:9053
#   meshgate demo-1   https 127.0.0.1:8443 (+HTTP/3 on udp 8443), http :8080, metrics :9101, mesh :7946
#   meshgate demo-2   https 127.0.0.1:8444, http :8081, metrics :9102, mesh :7947
#   meshgate demo-3   https 127.0.0.1:8445, http :8082, metrics :9103, mesh :7948
#   L4 UDP 5353 → UDP echo, bound by replica i on 127.0.0.i (--l4-bind-ip): one
#   port per replica IP, as each pod has its own IP in a cluster.
# waits until every /readyz answers 200, prints commands to try, and stays in
# the foreground until Ctrl-C / SIGTERM, then stops everything it started.
# A replica that dies (try `kill -9` on one) is logged and started again; it
# catches up on the cluster's sessions through a snapshot from its peers
# before it reports ready, so sessions issued before it died still resume
# on it. Only the echo backend exiting stops the demo.
#
# Environment:
#   BIN=dir          where meshgate and echo-backend are (default ./bin; built if missing)
#   DEMO_DIR=dir     work dir: PKI, manifests, logs (default ./_out/demo)
#   DEMO_SMOKE=1     run the smoke checks (curl HTTP/1.1 + HTTP/2 on every replica,
#                    WebSocket, UDP, HTTP/3, cross-replica resumption with openssl
#                    and over QUIC, a replica killed with SIGKILL restarted and
#                    resuming a session issued before it died), print
#                    PASS/FAIL, stop everything and exit 0 only if all passed.
#   READY_TIMEOUT=s  how long to wait for /readyz (default 60)
#   DEMO_KEY_TYPE=t  the server certificate's key: ecdsa (P-256, default) or rsa
#   DEMO_SAMPLES=dir manifests to serve (default config/samples/standalone)
# Needs no stdin and never prompts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BIN=${BIN:-$root/bin}
DEMO_DIR=${DEMO_DIR:-$root/_out/demo}
READY_TIMEOUT=${READY_TIMEOUT:-60}
HOST=echo.meshgate.test
N=3

log() { printf 'demo: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

for tool in openssl curl; do
  command -v "$tool" >/dev/null || die "$tool not found; run hack/install-deps.sh (or make deps)"
done
for b in meshgate:./cmd/meshgate echo-backend:./test/echo; do
  name=${b%%:*}
  if [ ! -x "$BIN/$name" ]; then
    log "building $BIN/$name"
    go build -o "$BIN/$name" "${b#*:}"
  fi
done

# Refuse to start over somebody else's listeners (e.g. a demo still running).
busy=""
for p in 8443 8444 8445 8080 8081 8082 9101 9102 9103 7946 7947 7948 9000; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy+=" $p"; fi
done
[ -z "$busy" ] || die "ports already in use on 127.0.0.1:$busy (another demo running?)"

mkdir -p "$DEMO_DIR"
pki=$DEMO_DIR/pki
manifests=$DEMO_DIR/manifests
logs=$DEMO_DIR/logs
mkdir -p "$logs"
rm -rf "$manifests" && mkdir -p "$manifests"

# ECDSA P-256, the certificate type docs/tlspolicy.md recommends (a full
# handshake signs with it several times cheaper than with RSA-2048).
KEY_TYPE=${DEMO_KEY_TYPE:-ecdsa} "$root/hack/certs.sh" "$pki" "$HOST"
samples_dir=${DEMO_SAMPLES:-config/samples/standalone}
samples=("$samples_dir"/*.yaml)
[ -e "${samples[0]}" ] || die "no manifests in $samples_dir/"
cp "${samples[@]}" "$manifests/"
cp "$pki/secret.yaml" "$manifests/echo-tls-secret.yaml"
# The L4 ConfigMap: UDP 5353 → the UDP echo, unless the samples bring one.
if ! grep -qs 'name: meshgate-l4' "$manifests"/*.yaml; then
  cat >"$manifests/meshgate-l4.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: meshgate-l4
  namespace: default
data:
  udp.5353: default/echo-udp:9053
---
apiVersion: v1
kind: Service
metadata:
  name: echo-udp
  namespace: default
spec:
  ports:
  - name: udp
    port: 9053
    targetPort: 9053
    protocol: UDP
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-udp-1
  namespace: default
  labels:
    kubernetes.io/service-name: echo-udp
addressType: IPv4
ports:
- name: udp
  port: 9053
  protocol: UDP
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
YAML
fi
mesh=$DEMO_DIR/mesh
[ -s "$mesh/ca.crt" ] || "$BIN/meshgate" mesh-ca --out "$mesh"

pids=()
cleanup() {
  trap - EXIT INT TERM
  [ ${#pids[@]} -gt 0 ] || return 0
  log "stopping ${#pids[@]} processes"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.2
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  pids=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$BIN/echo-backend" --listen 127.0.0.1:9000 --udp 127.0.0.1:9053 --name echo-demo </dev/null >"$logs/echo-backend.log" 2>&1 &
pids+=($!)

peers=127.0.0.1:7946,127.0.0.1:7947,127.0.0.1:7948
# start_replica i starts replica demo-i (appending to its log) as pids[i].
start_replica() {
  local i=$1
  "$BIN/meshgate" standalone \
    --manifests "$manifests" \
    --https-addr "127.0.0.1:$((8442 + i))" \
    --http-addr "127.0.0.1:$((8079 + i))" \
    --metrics-addr "127.0.0.1:$((9100 + i))" \
    --node-name "demo-$i" \
    --mesh-addr "127.0.0.1:$((7945 + i))" \
    --peers "$peers" \
    --mesh-dir "$mesh" \
    --http3 \
    --l4-configmap default/meshgate-l4 \
    --l4-bind-ip "127.0.0.$i" \
    </dev/null >>"$logs/demo-$i.log" 2>&1 &
  pids[i]=$!
}

# wait_ready i waits until demo-i's /readyz answers 200: it has its table
# and the cluster's sessions (a snapshot from a peer, or none to ask).
wait_ready() {
  local i=$1 deadline=$((SECONDS + READY_TIMEOUT))
  until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$((9100 + i))/readyz")" = 200 ]; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      tail -n 30 "$logs/demo-$i.log" >&2 || true
      log "demo-$i exited; log: $logs/demo-$i.log"
      return 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 30 "$logs/demo-$i.log" >&2 || true
      log "demo-$i not ready after ${READY_TIMEOUT}s; log: $logs/demo-$i.log"
      return 1
    fi
    sleep 0.2
  done
}

# restart_replica i reaps demo-i, logs how it ended and starts it again.
restart_replica() {
  local i=$1 st=0
  wait "${pids[$i]}" 2>/dev/null || st=$?
  log "demo-$i (pid ${pids[$i]}) exited with status $st; restarting it (it catches up through a snapshot from its peers; log: $logs/demo-$i.log)"
  printf '\n--- demo.sh: restarted after exit status %s ---\n' "$st" >>"$logs/demo-$i.log"
  start_replica "$i"
}

: >"$logs/demo-1.log" >"$logs/demo-2.log" >"$logs/demo-3.log"
for i in $(seq 1 $N); do start_replica "$i"; done

log "waiting for /readyz on 127.0.0.1:9101-9103 (up to ${READY_TIMEOUT}s)"
for i in $(seq 1 $N); do wait_ready "$i" || exit 1; done
log "all $N replicas ready"

ca=$pki/ca.crt
resolve() { printf -- '--resolve %s:%s:127.0.0.1' "$HOST" "$1"; }

smoke() {
  local pass=0 fail=0 out tmp
  tmp=$(mktemp -d)
  check() { # name, command...
    local name=$1
    shift
    if out=$("$@" 2>&1); then
      printf 'PASS  %s\n' "$name"
      pass=$((pass + 1))
    else
      printf 'FAIL  %s\n%s\n' "$name" "$(printf '%s' "$out" | tail -n 15 | sed 's/^/      /')"
      fail=$((fail + 1))
    fi
  }
  curl_ok() { # port, version flag
    local body
    body=$(curl -sS --fail --max-time 10 "$2" --cacert "$ca" $(resolve "$1") -w '\n%{http_version}' "https://$HOST:$1/smoke") || return 1
    printf '%s\n' "$body"
    grep -q "\"host\":\"$HOST" <<<"$body" || return 1
    case $2 in --http2) [ "$(tail -n1 <<<"$body")" = 2 ] ;; *) [ "$(tail -n1 <<<"$body")" = 1.1 ] ;; esac
  }
  s_client() { # port, version flag, -sess_out|-sess_in, file
    printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HOST" |
      timeout 15 openssl s_client -connect "127.0.0.1:$1" -servername "$HOST" -CAfile "$ca" \
        -verify_return_error "$2" "$3" "$4" -ign_eof 2>&1
  }
  resumes() { # version flag, protocol name
    local f=$tmp/sess$1.pem o
    o=$(s_client 8443 "$1" -sess_out "$f") || { printf '%s\n' "$o"; return 1; }
    grep -q "New, $2" <<<"$o" || { printf '%s\n' "$o"; return 1; }
    for port in 8444 8445; do
      o=$(s_client "$port" "$1" -sess_in "$f") || { printf '%s\n' "$o"; return 1; }
      grep -q "Reused, $2" <<<"$o" || { printf 'port %s did not resume:\n%s\n' "$port" "$o"; return 1; }
    done
  }
  for port in 8443 8444 8445; do
    check "curl HTTP/1.1 https://$HOST:$port/" curl_ok "$port" --http1.1
    check "curl HTTP/2   https://$HOST:$port/" curl_ok "$port" --http2
  done
  check "WebSocket round trip wss://$HOST:8443/ws" \
    "$BIN/echo-backend" ws-client --url "wss://$HOST:8443/ws" --cacert "$ca" --connect 127.0.0.1:8443 --message "demo websocket"
  for i in 1 2 3; do
    check "UDP echo via 127.0.0.$i:5353" "$BIN/echo-backend" udp-client --addr "127.0.0.$i:5353" --message "demo udp" --timeout 3s
  done
  check "HTTP/3 on udp 8443, 8444, 8445, QUIC session of 8443 resumed on the others" \
    "$BIN/echo-backend" h3-client --url "https://$HOST:8443/h3" --cacert "$ca" \
    --connect 127.0.0.1:8443,127.0.0.1:8444,127.0.0.1:8445 --want-resume
  check "TLS 1.2 session from 8443 resumed on 8444 and 8445 (openssl)" resumes -tls1_2 TLSv1.2
  check "TLS 1.3 session from 8443 resumed on 8444 and 8445 (openssl)" resumes -tls1_3 TLSv1.3
  # A replica killed with SIGKILL comes back and catches up: a session
  # issued by demo-1 before demo-2 died resumes on the new demo-2. The kill
  # and the restart run in this shell, not in check's subshell, so that
  # pids[2] names the new replica and cleanup stops it.
  restart_f=$tmp/sess-restart.pem
  check "TLS 1.3 session issued by 8443 before demo-2 is killed" s_client 8443 -tls1_3 -sess_out "$restart_f"
  kill -KILL "${pids[2]}"
  restart_replica 2
  restarted_resumes() {
    local o
    wait_ready 2 || return 1
    o=$(s_client 8444 -tls1_3 -sess_in "$restart_f") || { printf '%s\n' "$o"; return 1; }
    grep -q "Reused, TLSv1.3" <<<"$o" || { printf 'the restarted demo-2 did not resume:\n%s\n' "$o"; return 1; }
  }
  check "demo-2 killed (SIGKILL), restarted, resumes a session demo-1 issued before" restarted_resumes
  check "/status/sessionmesh on 9101" curl -sS --fail --max-time 5 http://127.0.0.1:9101/status/sessionmesh
  rm -rf "$tmp"
  printf '\n%d passed, %d failed\n' "$pass" "$fail"
  [ "$fail" -eq 0 ]
}

if [ "${DEMO_SMOKE:-}" = 1 ]; then
  if smoke; then echo "DEMO SMOKE: PASS"; exit 0; else echo "DEMO SMOKE: FAIL (logs in $logs)"; exit 1; fi
fi

cat <<TXT

meshgate demo is up: 3 replicas sharing TLS sessions. Work dir: $DEMO_DIR (logs in $logs)

  # HTTP/1.1 and HTTP/2 through each replica
  curl --cacert $ca $(resolve 8443) https://$HOST:8443/
  curl --http2 --cacert $ca $(resolve 8444) https://$HOST:8444/hello

  # take a TLS session from replica 1, resume it on replica 2 (look for "Reused")
  printf 'GET / HTTP/1.1\\r\\nHost: $HOST\\r\\nConnection: close\\r\\n\\r\\n' | openssl s_client -connect 127.0.0.1:8443 -servername $HOST -CAfile $ca -tls1_3 -sess_out /tmp/meshgate.sess -ign_eof | grep -E '^(New|Reused),'
  openssl s_client -connect 127.0.0.1:8444 -servername $HOST -CAfile $ca -tls1_3 -sess_in /tmp/meshgate.sess </dev/null | grep -E '^(New|Reused),'

  # WebSocket echo
  $BIN/echo-backend ws-client --url wss://$HOST:8443/ws --cacert $ca --connect 127.0.0.1:8443 --message hi

  # HTTP/3 (Debian's curl has none): one QUIC connection per replica, one session cache
  $BIN/echo-backend h3-client --url https://$HOST:8443/ --cacert $ca --connect 127.0.0.1:8443,127.0.0.1:8444,127.0.0.1:8445

  # UDP through the L4 proxy (replica i listens on 127.0.0.i:5353)
  $BIN/echo-backend udp-client --addr 127.0.0.2:5353 --message hi

  # plain HTTP (redirects TLS hosts to HTTPS), session mesh status, metrics
  curl -si -H 'Host: $HOST' http://127.0.0.1:8080/
  curl -s http://127.0.0.1:9101/status/sessionmesh
  curl -s http://127.0.0.1:9102/metrics | grep -i session

  # kill a replica: the demo logs it and restarts it, and the new one
  # catches up through a snapshot; the session saved above still resumes
  kill -9 \$(pgrep -f 'node-name demo-2')
  openssl s_client -connect 127.0.0.1:8444 -servername $HOST -CAfile $ca -tls1_3 -sess_in /tmp/meshgate.sess </dev/null | grep -E '^(New|Reused),'

Press Ctrl-C to stop.
TXT
# Stay in the foreground until a signal or the echo backend exits; a
# replica that exits is restarted.
while :; do
  kill -0 "${pids[0]}" 2>/dev/null || { log "echo backend exited; stopping (logs in $logs)"; exit 1; }
  for i in $(seq 1 $N); do
    kill -0 "${pids[$i]}" 2>/dev/null || restart_replica "$i"
  done
  sleep 1 &
  wait $! || true
done
