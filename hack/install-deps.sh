#!/usr/bin/env bash
# Installs the Debian packages meshgate's demo, tests and benchmarks drive
# (real clients and the nginx/HAProxy comparisons). Idempotent: a package
# whose command is already present is not touched, so a warm machine pays
# nothing. Needs root (CI and developer machines run as root).
set -euo pipefail

# command → Debian package
declare -A want=(
  [haproxy]=haproxy
  [nginx]=nginx
  [curl]=curl
  [openssl]=openssl
  [h2load]=nghttp2-client
  [wrk]=wrk
  [ip]=iproute2
  [tc]=iproute2
  [gnutls-cli]=gnutls-bin
  [java]=openjdk-17-jre-headless
  [strace]=strace
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# nginx's stream module ships separately; the L4 comparison needs it.
if command -v nginx >/dev/null 2>&1 && [ ! -e /usr/lib/nginx/modules/ngx_stream_module.so ]; then
  missing+=(libnginx-mod-stream)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "install-deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: need root to install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" libnginx-mod-stream >/dev/null
# The Debian packages start system services on install; meshgate's tests run
# their own instances on their own ports, so stop the system ones.
for svc in nginx haproxy; do
  (service "$svc" stop || true) >/dev/null 2>&1
done
