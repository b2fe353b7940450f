#!/usr/bin/env bash
# hack/certs.sh DIR HOST... — a throw-away demo PKI made with the openssl binary.
#
# Writes into DIR:
#   ca.crt, ca.key          a self-signed CA (RSA-2048, 30 days)
#   server.crt, server.key  a server certificate signed by it, CN = first HOST,
#                           subjectAltName = every HOST (IPs become IP SANs); its
#                           key is $KEY_TYPE: rsa (RSA-2048, the default: the key
#                           type the handshake benchmarks compare with nginx) or
#                           ecdsa (P-256, the recommended type: see docs/tlspolicy.md)
#   secret.yaml             a kubernetes.io/tls Secret holding server.crt/key
#                           (name $SECRET_NAME, default echo-tls; namespace
#                           $SECRET_NAMESPACE, default default)
#
# Idempotent: when DIR already holds a CA and a server certificate for exactly
# these hosts that is valid for at least another day, nothing is regenerated
# (only secret.yaml is rewritten). Keys are mode 0600. Never use it for real.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 DIR HOST..." >&2
  exit 2
fi
dir=$1
shift
hosts=("$@")
secret_name=${SECRET_NAME:-echo-tls}
secret_ns=${SECRET_NAMESPACE:-default}
key_type=${KEY_TYPE:-rsa}
case $key_type in
  rsa) newkey=(-newkey rsa:2048) usage=digitalSignature,keyEncipherment ;;
  ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) usage=digitalSignature ;;
  *) echo "certs.sh: KEY_TYPE must be rsa or ecdsa, not $key_type" >&2; exit 2 ;;
esac
command -v openssl >/dev/null || { echo "certs.sh: openssl not found (apt-get install -y openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077

san=""
for h in "${hosts[@]}"; do
  if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then san+="IP:$h,"; else san+="DNS:$h,"; fi
done
san=${san%,}
stamp="$dir/.hosts"
want_stamp="$key_type $san"

fresh() {
  [ -s "$dir/ca.crt" ] && [ -s "$dir/ca.key" ] && [ -s "$dir/server.crt" ] && [ -s "$dir/server.key" ] || return 1
  [ "$(cat "$stamp" 2>/dev/null)" = "$want_stamp" ] || return 1
  openssl x509 -checkend 86400 -noout -in "$dir/server.crt" >/dev/null 2>&1 || return 1
  openssl x509 -checkend 86400 -noout -in "$dir/ca.crt" >/dev/null 2>&1 || return 1
  openssl verify -CAfile "$dir/ca.crt" "$dir/server.crt" >/dev/null 2>&1
}

if ! fresh; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
    -subj "/O=meshgate demo/CN=meshgate demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$tmp/ca.key" -out "$tmp/ca.crt" 2>/dev/null
  openssl req "${newkey[@]}" -nodes -sha256 \
    -subj "/O=meshgate demo/CN=${hosts[0]}" \
    -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,$usage" \
    "extendedKeyUsage=serverAuth" \
    "subjectAltName=$san" >"$tmp/ext.cnf"
  openssl x509 -req -sha256 -days 30 -in "$tmp/server.csr" \
    -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
    -extfile "$tmp/ext.cnf" -out "$tmp/server.crt" 2>/dev/null
  openssl verify -CAfile "$tmp/ca.crt" "$tmp/server.crt" >/dev/null
  for f in ca.crt ca.key server.crt server.key; do mv -f "$tmp/$f" "$dir/$f"; done
  chmod 0644 "$dir/ca.crt" "$dir/server.crt"
  printf '%s' "$want_stamp" >"$stamp"
fi

b64() { base64 -w0 <"$1"; }
cat >"$dir/secret.yaml.tmp" <<YAML
apiVersion: v1
kind: Secret
metadata:
  name: ${secret_name}
  namespace: ${secret_ns}
type: kubernetes.io/tls
data:
  tls.crt: $(b64 "$dir/server.crt")
  tls.key: $(b64 "$dir/server.key")
YAML
mv -f "$dir/secret.yaml.tmp" "$dir/secret.yaml"
