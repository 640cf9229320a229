#!/usr/bin/env bash
# End-to-end relay throughput: Postfix's smtp-source submits to mxgate's submission
# listener (a trusted network, like Postfix mynetworks: no AUTH), mxgate queues each
# message durably (RocksDB WAL fsync, group commit), then relays it through a smart host —
# Postfix's smtp-sink — with a VERP sender. In the same run a private Postfix instance does
# the same path (mynetworks → fsync'd queue file → relayhost = the other smtp-sink).
# The clock stops when the sink has every message, so this is accept + queue + relay.
#
# Usage: benches/load/relay.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]   (defaults 10000 20 4096)
#        MXGATE_BIN=/path/to/mxgate skips `cargo build --release`.
#        MXGATE_EXTRA_TOML="..." is appended to mxgate's config (new tables only), e.g. a
#        [cluster] and [warming] to compare a node with and without redis_url.
# Needs root (smtp-sink drops to `nobody`; Postfix runs its daemons as `postfix`).
set -euo pipefail
cd "$(dirname "$0")/../.."
MSGS=${1:-10000}
SESSIONS=${2:-20}
SIZE=${3:-4096}
MX_PORT=${MX_PORT:-2725}
PF_PORT=${PF_PORT:-2726}
MX_SINK=${MX_SINK:-2727}
PF_SINK=${PF_SINK:-2728}
WARM=200
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mxgate-target}"

if ! command -v smtp-source >/dev/null 2>&1 && ! [ -x /usr/sbin/smtp-source ]; then
  echo "installing postfix (for smtp-source, smtp-sink and the reference server)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

if [ -z "${MXGATE_BIN:-}" ]; then
  ./.ci/deps
  cargo build --release --quiet
fi
BIN="${MXGATE_BIN:-$CARGO_TARGET_DIR/release/mxgate}"
WORK=$(mktemp -d /tmp/mxgate-relay-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  postfix -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- the two smart hosts (counters on stdout: "... mesg=N" per message) ---
"$SMTP_SINK" -u nobody -c "127.0.0.1:$MX_SINK" 1000 >"$WORK/mx-sink.out" 2>&1 &
PIDS+=($!)
"$SMTP_SINK" -u nobody -c "127.0.0.1:$PF_SINK" 1000 >"$WORK/pf-sink.out" 2>&1 &
PIDS+=($!)

# --- mxgate ---
cat > "$WORK/mxgate.toml" <<TOML
[server]
hostname = "mx.example.test"
data_dir = "$WORK/mx-data"
[listeners.submission]
bind = "127.0.0.1:$MX_PORT"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "$WORK/mx.crt"
key = "$WORK/mx.key"
[smtp]
max_connections_per_ip = 200
[queue]
concurrency = 64
[relay]
trusted_networks = ["127.0.0.0/8"]
bounce_domain = "example.test"
destination_concurrency = 32
[[relay.smarthosts]]
name = "sink"
host = "127.0.0.1"
port = $MX_SINK
security = "none"
${MXGATE_EXTRA_TOML:-}
TOML
MXGATE_LOG="warn,mxgate::server=info" "$BIN" serve --config "$WORK/mxgate.toml" 2>"$WORK/mxgate.log" &
PIDS+=($!)

# --- Postfix, a private instance relaying to its own sink ---
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
relayhost = [127.0.0.1]:$PF_SINK
mynetworks = 127.0.0.0/8
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = $PF/maillog
maillog_file_prefixes = /var, /dev/stdout, /tmp
default_process_limit = 200
default_destination_concurrency_limit = 32
smtp_connection_cache_on_demand = yes
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
CF
chown -R postfix "$PF/data"
postfix -c "$PF/etc" start >/dev/null 2>&1 || { echo "postfix failed to start:"; cat "$PF/maillog" 2>/dev/null; exit 1; }

wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
for p in "$MX_PORT" "$PF_PORT" "$MX_SINK" "$PF_SINK"; do wait_port "$p"; done

sunk() { tr '\r' '\n' <"$1" | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -1; }
wait_sunk() { # file count
  for _ in $(seq 1 6000); do [ "$(sunk "$1")" -ge "$2" ] 2>/dev/null && return 0; sleep 0.05; done
  echo "the sink got $(sunk "$1") of $2 messages" >&2; exit 1
}
run() { # name port sinkfile → messages/s, submission until the last message is at the sink
  local start end
  start=$(date +%s.%N)
  "$SMTP_SOURCE" -c -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -f app@example.test -t c@remote.test "127.0.0.1:$2" >"$WORK/$1.out" 2>&1
  wait_sunk "$3" $((MSGS + WARM))
  end=$(date +%s.%N)
  awk -v n="$MSGS" -v s="$start" -v e="$end" 'BEGIN { printf "%.0f", n / (e - s) }'
}
"$SMTP_SOURCE" -s 4 -m $WARM -l "$SIZE" -f app@example.test -t c@remote.test "127.0.0.1:$MX_PORT" >/dev/null 2>&1
"$SMTP_SOURCE" -s 4 -m $WARM -l "$SIZE" -f app@example.test -t c@remote.test "127.0.0.1:$PF_PORT" >/dev/null 2>&1
wait_sunk "$WORK/mx-sink.out" $WARM
wait_sunk "$WORK/pf-sink.out" $WARM

MX_RATE=$(run mxgate "$MX_PORT" "$WORK/mx-sink.out")
PF_RATE=$(run postfix "$PF_PORT" "$WORK/pf-sink.out")
echo "relay end to end: messages=$MSGS sessions=$SESSIONS size=$SIZE"
echo "mxgate:  $MX_RATE msg/s"
echo "postfix: $PF_RATE msg/s"
awk -v a="$MX_RATE" -v b="$PF_RATE" 'BEGIN { printf "ratio mxgate/postfix: %.2f\n", a / b }'
