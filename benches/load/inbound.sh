#!/usr/bin/env bash
# Whole-server inbound throughput: Postfix's smtp-source drives mxgate's inbound listener and,
# in the same run, a private Postfix instance on another loopback port. Both store each
# message durably before answering 250 (mxgate: RocksDB WAL fsync with group commit;
# Postfix: fsync'd queue file), both then throw the mail away (mxgate route `discard`,
# Postfix transport `discard:`), so the figure is acceptance throughput.
#
# Usage: benches/load/inbound.sh [MESSAGES] [SESSIONS] [SIZE_BYTES]   (defaults 20000 20 4096)
#        MXGATE_BIN=/path/to/mxgate skips `cargo build --release`.
#        REUSE=on: many messages per connection (smtp-source -d), for all three servers.
#        100 KiB messages: pass SIZE_BYTES=102400.
#        IDLE=N: after the runs, open N idle SMTP sessions (greeted, EHLO'd) to mxgate and
#        report its memory per session (PSS delta / N).
#        ROUNDS=N (default 3): N rounds of mxgate → Postfix → smtp-sink, interleaved, each
#        line printed; the summary is each server's median round (msg/s, CPU, PSS each the
#        median of its own column) and the ratios of those medians. On the shared 2-core VM
#        one run of a server differs from the next by up to ±20% (host steal), which a single
#        round turns straight into the ratio; interleaving puts every server through the
#        same spells. ROUNDS=1 is the old single run.
# Also printed, for issue 13's goals: the smtp-sink ceiling (smtp-source → smtp-sink, no
# storage at all) in the same run, server CPU per message (mxgate: its utime+stime; Postfix:
# the master's own and reaped children's plus live children's), and peak PSS under load
# (sampled every 0.1 s from /proc/*/smaps_rollup; Postfix: all its processes summed).
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
REUSE=${REUSE:-off}
IDLE=${IDLE:-0}
ROUNDS=${ROUNDS:-3}
# CACHE=32MiB: mxgate's [store] cache_bytes (block cache + memtables; default 128MiB).
CACHE=${CACHE:-}
STORE_TOML=""
[ -n "$CACHE" ] && STORE_TOML="[store]
cache_bytes = \"$CACHE\""
DNS_PORT=${DNS_PORT:-2653}
SINK_PORT=${SINK_PORT:-2627}
MX_PORT=${MX_PORT:-2625}
PF_PORT=${PF_PORT:-2626}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mxgate-target}"

if ! command -v smtp-source >/dev/null 2>&1 && ! [ -x /usr/sbin/smtp-source ]; then
  echo "installing postfix (for smtp-source and the reference server)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postfix >/dev/null
fi
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SMTP_SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)

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
SINK_PID=""
IDLE_PID=""
cleanup() {
  [ -n "$IDLE_PID" ] && kill "$IDLE_PID" 2>/dev/null || true
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null || true
  [ -n "$MX_PID" ] && kill "$MX_PID" 2>/dev/null && wait "$MX_PID" 2>/dev/null || true
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
  postfix -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
  if [ -n "${KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- sender authentication: off, or on against a private DNS server ---
# shellcheck source=benches/load/inbound-lib.sh
. benches/load/inbound-lib.sh
if [ "$AUTH" = on ]; then start_checks_dns "$WORK" "$DNS_PORT"; fi

# --- mxgate ---
inbound_toml "$WORK" "$MX_PORT" $((IDLE + 1000)) $((IDLE + 200)) \
  "$(checks_toml "$AUTH" "$DNS_PORT")
$STORE_TOML" >"$WORK/mxgate.toml"
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

"$SMTP_SINK" -u nobody -c "127.0.0.1:$SINK_PORT" 1000 >"$WORK/sink.out" 2>&1 &
SINK_PID=$!

wait_port "$MX_PORT"; wait_port "$PF_PORT"; wait_port "$SINK_PORT"

SOURCE_FLAGS=(-s "$SESSIONS" -l "$SIZE" -f bench@client.test -t sales@example.test)
[ "$REUSE" = on ] && SOURCE_FLAGS+=(-d)
PF_MASTER=$(tr -d ' ' <"$PF/queue/pid/master.pid")
HZ=$(getconf CLK_TCK)

pids_of() { # name → the PIDs whose CPU and memory count for that server
  case $1 in
    mxgate) echo "$MX_PID" ;;
    postfix) echo "$PF_MASTER" $(pgrep -P "$PF_MASTER" || true) ;;
    sink) echo "$SINK_PID" ;;
  esac
}
cpu_ticks() { # name → utime+stime (+ reaped children's for Postfix's master) in clock ticks
  local total=0 pid f
  for pid in $(pids_of "$1"); do
    f=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    f=${f##*) }  # fields after the command name, which may hold spaces
    # shellcheck disable=SC2086
    set -- $f    # now $12=utime $13=stime $14=cutime $15=cstime (stat fields 14..17)
    total=$((total + ${12} + ${13} + ${14} + ${15}))
  done
  echo "$total"
}
pss_kib() { # name → summed PSS in KiB
  local total=0 pid v
  for pid in $(pids_of "$1"); do
    v=$(awk '/^Pss:/ { print $2 }' "/proc/$pid/smaps_rollup" 2>/dev/null) || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}
sample_peak() { # name → writes the peak PSS seen until killed to $WORK/name.peak
  local peak=0 now
  while :; do
    now=$(pss_kib "$1"); [ "$now" -gt "$peak" ] && peak=$now && echo "$peak" >"$WORK/$1.peak"
    sleep 0.1
  done
}

run() { # name port → "msg/s cpu_ms_per_msg peak_pss_mib"
  local start end c0 c1 sampler
  echo 0 >"$WORK/$1.peak"
  sample_peak "$1" & sampler=$!
  c0=$(cpu_ticks "$1")
  start=$(date +%s.%N)
  "$SMTP_SOURCE" -c -m "$MSGS" "${SOURCE_FLAGS[@]}" "127.0.0.1:$2" >"$WORK/$1.out" 2>&1
  end=$(date +%s.%N)
  c1=$(cpu_ticks "$1")
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  awk -v n="$MSGS" -v s="$start" -v e="$end" -v c="$((c1 - c0))" -v hz="$HZ" -v p="$(cat "$WORK/$1.peak")" \
    'BEGIN { printf "%.0f %.3f %.1f", n / (e - s), c * 1000 / hz / n, p / 1024 }'
}
# Warm-up so all three have their processes and caches up.
for port in "$MX_PORT" "$PF_PORT" "$SINK_PORT"; do
  "$SMTP_SOURCE" -s 4 -m 200 -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$port" >/dev/null 2>&1
done

# median FORMAT < numbers: the middle one (mean of the two middle ones for an even count).
median() { sort -n | awk -v f="$1" '{ v[NR] = $1 } END { printf f, (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$WORK/rounds"
echo "messages=$MSGS sessions=$SESSIONS size=$SIZE reuse=$REUSE mxgate_auth_checks=$AUTH rounds=$ROUNDS"
for round in $(seq 1 "$ROUNDS"); do
  read -r MX_RATE MX_CPU MX_PSS <<<"$(run mxgate "$MX_PORT")"
  read -r PF_RATE PF_CPU PF_PSS <<<"$(run postfix "$PF_PORT")"
  read -r SINK_RATE _ _ <<<"$(run sink "$SINK_PORT")"
  echo "$MX_RATE $MX_CPU $MX_PSS $PF_RATE $PF_CPU $PF_PSS $SINK_RATE" >>"$WORK/rounds"
  awk -v r="$round" -v a="$MX_RATE" -v b="$PF_RATE" -v c="$SINK_RATE" -v mc="$MX_CPU" -v pc="$PF_CPU" \
    'BEGIN { printf "round %d: mxgate %d msg/s %s ms/msg, postfix %d msg/s %s ms/msg, sink %d msg/s; x postfix %.2f, x sink %.2f\n", r, a, mc, b, pc, c, a / b, a / c }'
done
col() { awk -v i="$1" '{ print $i }' "$WORK/rounds" | median "$2"; }
MX_RATE=$(col 1 %.0f) MX_CPU=$(col 2 %.3f) MX_PSS=$(col 3 %.1f)
PF_RATE=$(col 4 %.0f) PF_CPU=$(col 5 %.3f) PF_PSS=$(col 6 %.1f) SINK_RATE=$(col 7 %.0f)
[ "$ROUNDS" -gt 1 ] && echo "median of $ROUNDS rounds:"
echo "mxgate:    $MX_RATE msg/s  cpu $MX_CPU ms/msg  peak PSS $MX_PSS MiB"
echo "postfix:   $PF_RATE msg/s  cpu $PF_CPU ms/msg  peak PSS $PF_PSS MiB"
echo "smtp-sink: $SINK_RATE msg/s (no storage: the loopback + smtp-source ceiling)"
awk -v a="$MX_RATE" -v b="$PF_RATE" -v c="$SINK_RATE" \
  'BEGIN { printf "ratio mxgate/postfix: %.2f   mxgate/smtp-sink: %.2f\n", a / b, a / c }'
ADMIN=$(grep -o 'listener="admin" addr=[0-9.:]*' "$WORK/mxgate.log" | head -1 | sed 's/.*addr=//')
METRICS=$(curl -s "http://$ADMIN/metrics")
ACCEPTED=$(awk '/^mxgate_inbound_messages_total\{.*result="accepted"/ { s += $2 } END { print s + 0 }' <<<"$METRICS")
COMMITS=$(awk '/^mxgate_store_commits_total / { print $2 }' <<<"$METRICS")
PF_SENT=$(grep -c "status=sent" "$PF/maillog" || true)
echo "mxgate accepted $ACCEPTED messages in $COMMITS WAL fsyncs; postfix delivered $PF_SENT so far (both incl. 200 warm-up, all rounds)"

if [ "$IDLE" -gt 0 ]; then
  # N idle sessions: each greeted and EHLO'd, then silent (well inside the idle timeout).
  BEFORE=$(pss_kib mxgate)
  python3 - "$MX_PORT" "$IDLE" "$WORK/idle.ready" <<'PY' &
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.recv(512)
    s.sendall(b"EHLO idle.test\r\n")
    socks.append(s)
for s in socks:
    buf = b""
    while not buf.endswith(b"\r\n") or b"250 " not in buf:
        buf += s.recv(4096)
open(ready, "w").write(str(len(socks)))
time.sleep(600)
PY
  IDLE_PID=$!
  for _ in $(seq 1 600); do [ -f "$WORK/idle.ready" ] && break; sleep 0.1; done
  [ -f "$WORK/idle.ready" ] || { echo "idle sessions never all opened" >&2; exit 1; }
  sleep 1
  AFTER=$(pss_kib mxgate)
  awk -v n="$IDLE" -v a="$BEFORE" -v b="$AFTER" \
    'BEGIN { printf "idle sessions: %d, mxgate PSS %.1f -> %.1f MiB, %.1f KiB per session\n", n, a / 1024, b / 1024, (b - a) / n }'
fi
