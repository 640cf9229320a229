# Sourced by inbound.sh, ab.sh and latency.sh: the one inbound set-up they measure, so a figure from
# any of them is for the same server config.

# wait_port PORT: waits up to 10 s for a listener on 127.0.0.1:PORT, or exits the script.
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# start_checks_dns WORK PORT: a private dnsmasq on 127.0.0.1:PORT serving client.test's SPF
# and DMARC records and its PTR (installed when missing); sets DNS_PID. Authoritative for
# `test` so that a name that does not exist (DMARC's tree walk asks `_dmarc.test`) is answered
# NXDOMAIN with the zone's SOA, as any real resolver does: without the SOA no resolver may
# cache the negative answer (RFC 2308), and every message would ask again.
start_checks_dns() {
  local work=$1 port=$2 dnsmasq
  if ! command -v dnsmasq >/dev/null 2>&1 && ! [ -x /usr/sbin/dnsmasq ]; then
    echo "installing dnsmasq (DNS for the checks-on run)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsmasq-base >/dev/null
  fi
  dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
  "$dnsmasq" --keep-in-foreground --no-resolv --no-hosts --port="$port" \
    --listen-address=127.0.0.1 --bind-interfaces --pid-file="$work/dnsmasq.pid" \
    --txt-record=client.test,"v=spf1 ip4:127.0.0.0/8 -all" \
    --txt-record=_dmarc.client.test,"v=DMARC1; p=reject" \
    --address=/client.test/127.0.0.1 --ptr-record=1.0.0.127.in-addr.arpa,client.test \
    --local=/test/ --local=/in-addr.arpa/ --local-ttl=300 \
    --auth-server=ns.test,127.0.0.1 --auth-zone=test --auth-ttl=300 \
    --auth-soa=1,hostmaster.test,1200,120,604800 \
    2>"$work/dnsmasq.log" &
  DNS_PID=$!
}

# checks_toml on|off DNS_PORT: the config table for sender authentication on (against the
# dnsmasq above) or off (like a default Postfix).
checks_toml() {
  if [ "$1" = on ]; then
    printf '[dns]\nnameservers = ["127.0.0.1:%s"]\n' "$2"
  else
    printf '[auth]\nspf = false\ndkim = false\ndmarc = false\narc = false\niprev = false\n'
  fi
}

# inbound_toml WORK PORT MAX_CONNECTIONS MAX_PER_IP EXTRA_TABLES: mxgate's config for the
# inbound runs: sales@example.test routed to `discard`, data in WORK/mx-data.
inbound_toml() {
  cat <<TOML
[server]
hostname = "mx.example.test"
data_dir = "$1/mx-data"
[listeners.inbound]
bind = "127.0.0.1:$2"
[admin]
bind = "127.0.0.1:0"
[tls]
cert = "$1/mx.crt"
key = "$1/mx.key"
[smtp]
max_connections = $3
max_connections_per_ip = $4
[[domains]]
name = "example.test"
[[aliases]]
address = "sales@example.test"
route = "sink"
[routes.sink]
kind = "discard"
$5
TOML
}
