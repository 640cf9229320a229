#!/usr/bin/env bash
# Whole-server inbound throughput: Postfix's smtp-source drives mxgate's inbound listener and,
# in the same run, a private Postfix instance on another loopback port. Both store each
# message durably before answering 250 (mxgate: RocksDB WAL fsync with group commit;
# Postfix: fsync'd queue file), both then throw the mail away (mxgate route `discard`,
# Postfix transport `discard:`), so the figure is acceptance throughput.
#
# Usage: benches/load/inbound.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]   (defaults 20000 20 4096)
#        MXGATE_BIN=/path/to/mxgate skips `cargo build --release`.
#        AUTH=off (default): mxgate's SPF/DKIM/DMARC checks off, like a default Postfix.
#        AUTH=on: checks on, the sender's SPF/DMARC records served by a private dnsmasq on
#        127.0.0.1:$DNS_PORT (installed when missing), so DNS answers come from cache.
# Needs root (or sudo) once to install postfix; runs everything on 127.0.0.1 and stops
# every process it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
MSGS=${1:-20000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
AUTH=${AUTH:-off}
DNS_PORT=${DNS_PORT:-2653}
MX_PORT=${MX_PORT:-2625}
PF_PORT=${PF_PORT:-2626}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mxgate-target}"

if ! command -v smtp-source >/dev/null 2>&1 && ! [ -x /usr/sbin/smtp-source ]; then
  echo "installing postfix (for smtp-source and the reference server)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)

# MXGATE_BIN=path skips the build (measure a binary you already have).
if [ -z "${MXGATE_BIN:-}" ]; then
  ./.ci/deps
  cargo build --release --quiet
fi
BIN="${MXGATE_BIN:-$CARGO_TARGET_DIR/release/mxgate}"
WORK=$(mktemp -d /tmp/mxgate-bench.XXXXXX)
chmod 755 "$WORK" # Postfix daemons run as the postfix user
MX_PID=""
DNS_PID=""
cleanup() {
  [ -n "$MX_PID" ] && kill "$MX_PID" 2>/dev/null && wait "$MX_PID" 2>/dev/null || true
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
  postfix -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- sender authentication: off, or on against a private DNS server ---
if [ "$AUTH" = on ]; then
  if ! command -v dnsmasq >/dev/null 2>&1 && ! [ -x /usr/sbin/dnsmasq ]; then
    echo "installing dnsmasq (DNS for the checks-on run)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null
  fi
  DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
  "$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts --port="$DNS_PORT" \
    --listen-address=127.0.0.1 --bind-interfaces --pid-file="$WORK/dnsmasq.pid" \
    --txt-record=client.test,"v=spf1 ip4:127.0.0.0/8 -all" \
    --txt-record=_dmarc.client.test,"v=DMARC1; p=reject" \
    --address=/client.test/127.0.0.1 --ptr-record=1.0.0.127.in-addr.arpa,client.test \
    --local=/test/ --local=/in-addr.arpa/ --local-ttl=300 \
    2>"$WORK/dnsmasq.log" &
  DNS_PID=$!
  AUTH_TOML="[dns]
nameservers = [\"127.0.0.1:$DNS_PORT\"]"
else
  AUTH_TOML="[auth]
spf = false
dkim = false
dmarc = false
arc = false
iprev = false"
fi

# --- mxgate ---
cat > "$WORK/mxgate.toml" <<TOML
[server]
hostname = "mx.example.test"
data_dir = "$WORK/mx-data"
[listeners.inbound]
bind = "127.0.0.1:$MX_PORT"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "$WORK/mx.crt"
key = "$WORK/mx.key"
[smtp]
max_connections_per_ip = 200
[[domains]]
name = "example.test"
[[aliases]]
address = "sales@example.test"
route = "sink"
[routes.sink]
kind = "discard"
$AUTH_TOML
TOML
MXGATE_LOG="warn,mxgate::server=info" "$BIN" serve --config "$WORK/mxgate.toml" 2>"$WORK/mxgate.log" &
MX_PID=$!

# --- Postfix, a private instance (own config, queue and port) ---
PF="$WORK/pf"
mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
cp /etc/postfix/master.cf "$PF/etc/master.cf"
sed -i -E "s/^smtp( +)inet/127.0.0.1:$PF_PORT\1inet/" "$PF/etc/master.cf"
cat > "$PF/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = bench.example.test
mydestination =
relay_domains = example.test
transport_maps = inline:{ example.test=discard: }
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $PF/maillog
maillog_file_prefixes = /var, /dev/stdout, /tmp
default_process_limit = 200
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
CF
chown -R postfix "$PF/data"
postfix -c "$PF/etc" start >/dev/null 2>&1 || { echo "postfix failed to start:"; cat "$PF/maillog" 2>/dev/null; exit 1; }

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
wait_port "$MX_PORT"; wait_port "$PF_PORT"

run() { # name port → messages/s
  local start end
  start=$(date +%s.%N)
  "$SMTP_SOURCE" -c -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$2" >"$WORK/$1.out" 2>&1
  end=$(date +%s.%N)
  awk -v n="$MSGS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }'
}
# Warm-up so both have their processes and caches up.
"$SMTP_SOURCE" -s 4 -m 200 -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$MX_PORT" >/dev/null 2>&1
"$SMTP_SOURCE" -s 4 -m 200 -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$PF_PORT" >/dev/null 2>&1

MX_RATE=$(run mxgate "$MX_PORT")
PF_RATE=$(run postfix "$PF_PORT")
echo "messages=$MSGS sessions=$SESSIONS size=$SIZE mxgate_auth_checks=$AUTH"
echo "mxgate:  $MX_RATE msg/s"
echo "postfix: $PF_RATE msg/s"
awk -v a="$MX_RATE" -v b="$PF_RATE" 'BEGIN { printf "ratio mxgate/postfix: %.2f\n", a / b }'
ADMIN=$(grep -o 'listener="admin" addr=[0-9.:]*' "$WORK/mxgate.log" | head -1 | sed 's/.*addr=//')
METRICS=$(curl -s "http://$ADMIN/metrics")
ACCEPTED=$(awk '/^mxgate_inbound_messages_total\{.*result="accepted"/ { s += $2 } END { print s + 0 }' <<<"$METRICS")
COMMITS=$(awk '/^mxgate_store_commits_total / { print $2 }' <<<"$METRICS")
PF_SENT=$(grep -c "status=sent" "$PF/maillog" || true)
echo "mxgate accepted $ACCEPTED messages in $COMMITS WAL fsyncs; postfix delivered $PF_SENT so far (both incl. 200 warm-up)"
