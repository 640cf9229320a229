#!/usr/bin/env bash
# A/B of mxgate builds on a noisy machine: the same inbound load (smtp-source, one message per
# connection, as inbound.sh) against each binary in turn, ROUNDS times interleaved, each on a
# fresh data dir; prints msg/s, server CPU per message and peak PSS per run, then the mean per
# binary. On the 2-core VM back-to-back runs of one binary differ by ±20% (host steal), so
# compare means of interleaved rounds, not two single runs. No Postfix here: inbound.sh gives
# the ratios; this says which build is faster.
#
# Usage: benches/load/ab.sh ROUNDS MESSAGES SIZE_BYTES BIN...   e.g.
#        benches/load/ab.sh 8 20000 4096 /tmp/base/mxgate target/profiling/mxgate
#        AUTH=on (default): SPF/DKIM/DMARC/iprev on against a private dnsmasq; AUTH=off: off.
#        SESSIONS=20 (default).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,13p' "$0"; exit 2; }
ROUNDS=$1 MSGS=$2 SIZE=$3
shift 3
BINS=("$@")
AUTH=${AUTH:-on}
SESSIONS=${SESSIONS:-20}
MX_PORT=${MX_PORT:-2625}
DNS_PORT=${DNS_PORT:-2653}
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found: apt-get install postfix" >&2; exit 1; }
WORK=$(mktemp -d /tmp/mxgate-ab.XXXXXX)
DNS_PID="" MX_PID="" SAMPLER=""
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "$MX_PID" ] && kill "$MX_PID" 2>/dev/null && wait "$MX_PID" 2>/dev/null || true
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ "$AUTH" = on ]; then
  DNSMASQ=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
  [ -x "$DNSMASQ" ] || { echo "dnsmasq not found: apt-get install dnsmasq-base" >&2; exit 1; }
  "$DNSMASQ" --keep-in-foreground --no-resolv --no-hosts --port="$DNS_PORT" \
    --listen-address=127.0.0.1 --bind-interfaces \
    --txt-record=client.test,"v=spf1 ip4:127.0.0.0/8 -all" \
    --txt-record=_dmarc.client.test,"v=DMARC1; p=reject" \
    --address=/client.test/127.0.0.1 --ptr-record=1.0.0.127.in-addr.arpa,client.test \
    --local=/test/ --local=/in-addr.arpa/ --local-ttl=300 2>"$WORK/dnsmasq.log" &
  DNS_PID=$!
  CHECKS="[dns]
nameservers = [\"127.0.0.1:$DNS_PORT\"]"
else
  CHECKS="[auth]
spf = false
dkim = false
dmarc = false
arc = false
iprev = false"
fi

HZ=$(getconf CLK_TCK)
cpu_ticks() { local f; f=$(cat "/proc/$1/stat"); f=${f##*) }; set -- $f; echo $((${12} + ${13})); }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

: >"$WORK/results"
for _ in $(seq 1 "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    rm -rf "$WORK/data"
    cat >"$WORK/mxgate.toml" <<TOML
[server]
hostname = "mx.example.test"
data_dir = "$WORK/data"
[listeners.inbound]
bind = "127.0.0.1:$MX_PORT"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "$WORK/mx.crt"
key = "$WORK/mx.key"
[smtp]
max_connections = 1000
max_connections_per_ip = 200
[[domains]]
name = "example.test"
[[aliases]]
address = "sales@example.test"
route = "sink"
[routes.sink]
kind = "discard"
$CHECKS
TOML
    MXGATE_LOG=warn "$bin" serve --config "$WORK/mxgate.toml" 2>"$WORK/mxgate.log" &
    MX_PID=$!
    wait_port "$MX_PORT"
    "$SMTP_SOURCE" -s 4 -m 200 -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$MX_PORT" >/dev/null 2>&1
    (while :; do awk '/^Pss:/ { print $2 }' "/proc/$MX_PID/smaps_rollup" 2>/dev/null; sleep 0.1; done >"$WORK/pss") &
    SAMPLER=$!
    c0=$(cpu_ticks "$MX_PID")
    start=$(date +%s.%N)
    "$SMTP_SOURCE" -c -m "$MSGS" -s "$SESSIONS" -l "$SIZE" -f bench@client.test -t sales@example.test "127.0.0.1:$MX_PORT" >/dev/null 2>&1
    end=$(date +%s.%N)
    c1=$(cpu_ticks "$MX_PID")
    kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""
    kill "$MX_PID"; wait "$MX_PID" 2>/dev/null || true; MX_PID=""
    peak=$(sort -n "$WORK/pss" | tail -1)
    awk -v b="$bin" -v n="$MSGS" -v s="$start" -v e="$end" -v c="$((c1 - c0))" -v hz="$HZ" -v p="${peak:-0}" \
      'BEGIN { printf "%s %.0f msg/s %.3f ms/msg peak PSS %.1f MiB\n", b, n / (e - s), c * 1000 / hz / n, p / 1024 }' |
      tee -a "$WORK/results"
  done
done
echo "mean of $ROUNDS rounds, $MSGS × $SIZE B, $SESSIONS sessions, checks $AUTH:"
awk '{ r[$1] += $2; c[$1] += $4; p[$1] += $8; n[$1]++ }
  END { for (b in r) printf "  %s %.0f msg/s %.3f ms/msg peak PSS %.1f MiB\n", b, r[b] / n[b], c[b] / n[b], p[b] / n[b] }' "$WORK/results"
