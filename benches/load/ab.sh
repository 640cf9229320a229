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

# shellcheck source=benches/load/inbound-lib.sh
. "$(dirname "$0")/inbound-lib.sh"
if [ "$AUTH" = on ]; then start_checks_dns "$WORK" "$DNS_PORT"; fi
CHECKS=$(checks_toml "$AUTH" "$DNS_PORT")

HZ=$(getconf CLK_TCK)
cpu_ticks() { local f; f=$(cat "/proc/$1/stat"); f=${f##*) }; set -- $f; echo $((${12} + ${13})); }

: >"$WORK/results"
for _ in $(seq 1 "$ROUNDS"); do
  for bin in "${BINS[@]}"; do
    rm -rf "$WORK/mx-data"
    inbound_toml "$WORK" "$MX_PORT" 1000 200 "$CHECKS" >"$WORK/mxgate.toml"
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
