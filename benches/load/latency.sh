#!/usr/bin/env bash
# Per-message latency seen by one client while the server is idle or under load: a Python
# smtplib probe (what Odoo uses) sends PROBES messages one after another, a new connection
# each, 4 KiB, to mxgate's inbound listener (checks on, as ab.sh), and prints the p50/p90/p99
# of the time from connect to the end of QUIT. With BG=N, smtp-source keeps N other sessions
# sending meanwhile, so the probe measures the wait behind a busy server. Each mode in
# MODES (server.sched_batch values) runs ROUNDS times, interleaved, each on a fresh data dir.
#
# Usage: benches/load/latency.sh BIN   e.g. benches/load/latency.sh target/profiling/mxgate
#        BG=10 (default 0): background smtp-source sessions; PROBES=400 (the first 50 are
#        warm-up, not counted); ROUNDS=2; MODES="false true".
set -euo pipefail
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
BIN=$1
BG=${BG:-0}
PROBES=${PROBES:-400}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-false true}
MX_PORT=${MX_PORT:-2625}
DNS_PORT=${DNS_PORT:-2653}
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SMTP_SOURCE" ] || { echo "smtp-source not found: apt-get install postfix" >&2; exit 1; }
WORK=$(mktemp -d /tmp/mxgate-lat.XXXXXX)
DNS_PID="" MX_PID="" BG_PID=""
cleanup() {
  [ -n "$BG_PID" ] && kill "$BG_PID" 2>/dev/null || true
  [ -n "$MX_PID" ] && kill "$MX_PID" 2>/dev/null && wait "$MX_PID" 2>/dev/null || true
  [ -n "$DNS_PID" ] && kill "$DNS_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# shellcheck source=benches/load/inbound-lib.sh
. "$(dirname "$0")/inbound-lib.sh"
start_checks_dns "$WORK" "$DNS_PORT"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/mx.key" -out "$WORK/mx.crt" \
  -days 1 -subj /CN=mx.example.test 2>/dev/null

echo "probes=$PROBES background_sessions=$BG rounds=$ROUNDS (ms, connect to QUIT)"
for round in $(seq 1 "$ROUNDS"); do
  for mode in $MODES; do
    rm -rf "$WORK/mx-data"
    inbound_toml "$WORK" "$MX_PORT" 1000 200 "$(checks_toml on "$DNS_PORT")" \
      | sed "s/^\[server\]$/[server]\nsched_batch = $mode/" >"$WORK/mxgate.toml"
    MXGATE_LOG=warn "$BIN" serve --config "$WORK/mxgate.toml" 2>"$WORK/mxgate.log" &
    MX_PID=$!
    wait_port "$MX_PORT"
    if [ "$BG" -gt 0 ]; then
      "$SMTP_SOURCE" -c -m 100000000 -s "$BG" -l 4096 -f bench@client.test \
        -t sales@example.test "127.0.0.1:$MX_PORT" >/dev/null 2>&1 &
      BG_PID=$!
      sleep 1
    fi
    printf 'round %d sched_batch=%-5s ' "$round" "$mode"
    python3 - "$MX_PORT" "$PROBES" <<'PY'
import smtplib, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
body = "From: bench@client.test\r\nTo: sales@example.test\r\nSubject: probe\r\n\r\n" + "x" * 4000 + "\r\n"
times = []
for _ in range(n):
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.sendmail("bench@client.test", ["sales@example.test"], body)
    times.append((time.perf_counter() - start) * 1000)
times = sorted(times[50:])
q = lambda p: times[int(p * (len(times) - 1))]
print(f"p50 {q(.5):.2f}  p90 {q(.9):.2f}  p99 {q(.99):.2f}  max {times[-1]:.2f}")
PY
    if [ -n "$BG_PID" ]; then kill "$BG_PID" 2>/dev/null || true; wait "$BG_PID" 2>/dev/null || true; BG_PID=""; fi
    kill "$MX_PID"; wait "$MX_PID" 2>/dev/null || true; MX_PID=""
  done
done
