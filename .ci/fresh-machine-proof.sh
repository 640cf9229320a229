#!/usr/bin/env bash
# Fresh-machine proof: runs `.ci/run` in a throwaway Debian 12 chroot that has only what the
# base image promises (Rust, python3, git), with an empty CARGO_TARGET_DIR and an empty cargo
# registry, so every system package the build and the tests need must come from .ci/deps.
# Not run by .ci/run: it takes ~1 h on 2 cores and needs root, debootstrap and a Debian mirror.
#
#   sudo .ci/fresh-machine-proof.sh            # proves HEAD of this repository
#   REF=main SHARED=../shared KEEP=1 .ci/fresh-machine-proof.sh
#
# ROOT (chroot dir, default /var/tmp/mxgate-fresh), REF (commit to clone, default HEAD),
# SHARED (the shared/ folder copied beside the clone, as CI has it; default ../shared),
# MIRROR (default: the host's first Debian mirror), KEEP=1 keeps the chroot for a look.
# The chroot is deliberately poorer than the base image: no C compiler, no clang, no
# promtool, no chromium; .ci/deps has to install each of them.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-/var/tmp/mxgate-fresh}
REF=${REF:-HEAD}
SHARED=${SHARED:-$REPO/../shared}
RUSTUP_SRC=${RUSTUP_HOME:-$HOME/.rustup}
CARGO_BIN_SRC=${CARGO_HOME:-$HOME/.cargo}/bin
host_mirror() {
  # The host's own mirror, so the proof uses the same registry the machines use.
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
    grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' || true; } |
    grep -v security | head -n1 || true
}
MIRROR=${MIRROR:-$(host_mirror)}

[ "$(id -u)" = 0 ] || { echo "fresh-machine-proof: needs root (debootstrap, mount, chroot)" >&2; exit 1; }
[ -n "$MIRROR" ] || { echo "fresh-machine-proof: no Debian mirror found; set MIRROR=" >&2; exit 1; }
[ -x "$CARGO_BIN_SRC/cargo" ] || { echo "fresh-machine-proof: no cargo in $CARGO_BIN_SRC" >&2; exit 1; }
[ ! -e "$ROOT" ] || { echo "fresh-machine-proof: $ROOT exists; remove it or set ROOT=" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap

mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -R "${mounts[$i]}" 2>/dev/null || umount -lR "${mounts[$i]}" || true
  done
  if [ "${KEEP:-}" = 1 ]; then
    echo "fresh-machine-proof: kept $ROOT (unmounted)"
  elif [ -d "$ROOT" ] && ! findmnt -rn -o TARGET | grep -q "^$ROOT/"; then
    rm -rf --one-file-system "$ROOT"
  fi
}
trap cleanup EXIT
bind() { # bind SRC DEST [ro]
  mkdir -p "$ROOT$2"
  mount --rbind "$1" "$ROOT$2"
  mount --make-rslave "$ROOT$2"
  mounts+=("$ROOT$2")
  [ "${3:-}" != ro ] || mount -o remount,bind,ro "$ROOT$2"
}

echo "== debootstrap bookworm from $MIRROR into $ROOT"
t0=$SECONDS
debootstrap --variant=minbase --include=python3,git,ca-certificates bookworm "$ROOT" "$MIRROR" \
  >"$ROOT.debootstrap.log" 2>&1 || { tail -n 30 "$ROOT.debootstrap.log" >&2; exit 1; }
rm -f "$ROOT.debootstrap.log"
# The base image's apt sources (updates and security too) and its no-daemons-in-a-container
# policy: installing prometheus must not start a server inside the chroot.
cp /etc/apt/sources.list.d/debian.sources "$ROOT/etc/apt/sources.list.d/" 2>/dev/null &&
  rm -f "$ROOT/etc/apt/sources.list" || true
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod +x "$ROOT/usr/sbin/policy-rc.d"
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# CA certificates the host added locally (a machine whose egress goes through a TLS-inspecting
# proxy has them in its base image; without them cargo cannot reach crates.io).
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  chroot "$ROOT" update-ca-certificates >/dev/null 2>&1
fi
echo "   $((SECONDS - t0)) s"

mkdir -p "$ROOT/proc" "$ROOT/sys"
mount -t proc proc "$ROOT/proc" && mounts+=("$ROOT/proc")
mount -t sysfs sys "$ROOT/sys" && mounts+=("$ROOT/sys")
bind /dev /dev
# The host's toolchain, read-only; CARGO_HOME inside is empty, so crates are fetched anew.
bind "$RUSTUP_SRC" /root/.rustup ro
bind "$CARGO_BIN_SRC" /root/.cargo/bin ro

echo "== clone $REF ($(git -C "$REPO" rev-parse --short "$REF"))"
git -C "$REPO" bundle create "$ROOT/root/mxgate.bundle" "$REF" 2>/dev/null
mkdir -p "$ROOT/work"
chroot "$ROOT" git -c advice.detachedHead=false clone -q /root/mxgate.bundle /work/mxgate
if [ -d "$SHARED" ]; then
  cp -r "$SHARED" "$ROOT/work/shared" && chmod -R a-w "$ROOT/work/shared"
else
  echo "   no shared/ at $SHARED: tests that read it will skip" >&2
fi

echo "== CI=true bash .ci/run (empty CARGO_TARGET_DIR), log in $ROOT/work/ci.log"
t0=$SECONDS
set +e
chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/root/.cargo/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  LANG=C.UTF-8 CI=true CARGO_TARGET_DIR=/work/target RUSTUP_HOME=/root/.rustup \
  CARGO_HOME=/root/.cargo /bin/bash -c 'cd /work/mxgate && bash .ci/run </dev/null' \
  >"$ROOT/work/ci.log" 2>&1
rc=$?
set -e
wall=$((SECONDS - t0))
grep -E '^(== |test result:|mxgate: |SKIPPED)|FAILED|panicked' "$ROOT/work/ci.log" | tail -n 80
cp "$ROOT/work/ci.log" "${LOG:-/var/tmp/mxgate-fresh-proof.log}"
echo "== .ci/run exit $rc after ${wall} s ($((wall / 60)) min); log copied to ${LOG:-/var/tmp/mxgate-fresh-proof.log}"
exit "$rc"
