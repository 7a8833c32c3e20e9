#!/usr/bin/env bash
# The system test (make test-system): the Debian package of BUILD_DIR installed with apt into a fresh minimal
# Debian, booted with systemd as PID 1 under systemd-nspawn, checked from inside by tests/system/checks.sh.
#
#   tests/system/run.sh BUILD_DIR          (root; needs mmdebstrap and systemd-container; Debian's archive)
#
# Environment: OMNI_SYSTEM_SUITE (bookworm), OMNI_DEBIAN_MIRROR (http://deb.debian.org/debian),
# OMNI_SYSTEM_CACHE (/var/cache/omnid-system-test when writable, else BUILD_DIR/system-test/cache): the base
# rootfs tarball (remade when the package list below changes, or after 7 days) and apt's downloaded .debs, so a
# second run downloads nothing; a clean machine makes both (about 2 minutes on 2 cores).
set -euo pipefail
BUILD=$(realpath "${1:?usage: tests/system/run.sh BUILD_DIR}")
SRC=$(realpath "$(dirname "$0")/../..")
SUITE=${OMNI_SYSTEM_SUITE:-bookworm}
MIRROR=${OMNI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
if [ "$(id -u)" != 0 ]; then echo "tests/system/run.sh: needs root (mmdebstrap, systemd-nspawn)" >&2; exit 2; fi
for tool in mmdebstrap systemd-nspawn dpkg-deb; do
  command -v $tool >/dev/null || { echo "tests/system/run.sh: $tool is not installed (make deps)" >&2; exit 2; }
done

. "$SRC/tests/system/lib.sh"
CACHE=$(cache_dir "$BUILD/system-test/cache")
WORK=$BUILD/system-test
ROOT=$WORK/root
mkdir -p "$CACHE/apt-$SUITE" "$WORK"

# The package under test and the same build packaged as an older version: the upgrade check installs the
# first over the second.
mapfile -t debs < <(ls "$BUILD"/omnid_*.deb 2>/dev/null | grep -v '~prev')
[ ${#debs[@]} = 1 ] || { echo "tests/system/run.sh: expected one $BUILD/omnid_*.deb (make package), found ${#debs[@]}" >&2; exit 2; }
NEW=${debs[0]}
VERSION=$(dpkg-deb -f "$NEW" Version)
PREV=$WORK/omnid_${VERSION}~prev_$(dpkg-deb -f "$NEW" Architecture).deb
rm -rf "$WORK/prev" && dpkg-deb -R "$NEW" "$WORK/prev"
sed -i "s/^Version: .*/Version: ${VERSION}~prev/" "$WORK/prev/DEBIAN/control"
dpkg-deb -b --root-owner-group "$WORK/prev" "$PREV" >/dev/null
rm -rf "$WORK/prev"
MODEL=$BUILD/models/tiny-a
[ -f "$MODEL/config.json" ] || { echo "tests/system/run.sh: no tiny model at $MODEL (build first)" >&2; exit 2; }

# Base: minimal Debian with systemd as init and python3 (the idle-connection check).
base_rootfs "$CACHE" "$SUITE" "$MIRROR" systemd,systemd-sysv,dbus,python3-minimal "$ROOT"

# What the setup needs inside: the packages, the model (its links resolved), the recording, the checks.
IN=$ROOT/root/omnid-test
mkdir -p "$IN"
cp "$PREV" "$IN/omnid-prev.deb"
cp "$NEW" "$ROOT/root/omnid-new.deb"
cp -rL "$MODEL" "$IN/tiny-a"
cp "$SRC/tests/integration/data/one_question.wav" "$IN/"
install -m 0755 "$SRC/tests/system/checks.sh" "$ROOT/usr/local/sbin/package-checks"

nspawn=(systemd-nspawn --quiet --register=no --keep-unit -D "$ROOT")
export SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1
# Setup (network on, no boot): install the previous package with apt, dependencies from the archive.
"${nspawn[@]}" --bind="$CACHE/apt-$SUITE:/var/cache/apt/archives" /bin/bash -euxo pipefail -c '
  export DEBIAN_FRONTEND=noninteractive
  rm -f /etc/apt/apt.conf.d/docker-clean   # keep downloaded .debs in the (bind-mounted) cache
  apt-get update -q
  apt-get install -y -q --no-install-recommends /root/omnid-test/omnid-prev.deb
  useradd -m alice && useradd -m bob && usermod -aG omnid alice
  install -d -o omnid -g omnid -m 0750 /var/lib/omnid/models
  cp -r /root/omnid-test/tiny-a /var/lib/omnid/models/ && cp /root/omnid-test/one_question.wav /var/lib/omnid/
  chown -R omnid:omnid /var/lib/omnid
  # The administrator edits the installed configuration: the tiny model on the CPU, the recording as the
  # microphone (closed at start), answers written to files (the container has no sound card).
  sed -i -e "s|^  path: /var/lib/omnid/models/.*|  path: /var/lib/omnid/models/tiny-a|" \
         -e "s|^  device: cuda .*|  device: cpu|" \
         -e "s|^  max_new_tokens: .*|  max_new_tokens: 2048|" \
         -e "s|^  max_speech_frames: .*|  max_speech_frames: 65536|" \
         -e "s|^    pipeline: .*|    pipeline: \"filesrc location=/var/lib/omnid/one_question.wav ! wavparse\"|" \
         -e "s|^    listen: true .*|    listen: false|" \
         -e "s|^    restart_on_end: true|    restart_on_end: false|" \
         -e "s|^    backend: portaudio .*|    backend: wav-file|" \
         -e "s|^    path: \"\" .*|    path: /var/lib/omnid/answer-{turn}.wav|" /etc/omnid/omnid.yaml
  omnid --check-config /etc/omnid/omnid.yaml
  mkdir -p /var/log/journal
  cat > /etc/systemd/system/package-checks.service <<UNIT
[Unit]
Description=checks of the installed omnid package (tests/system/checks.sh)
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/package-checks
StandardOutput=journal
[Install]
WantedBy=default.target
UNIT
  systemctl enable package-checks.service
  systemctl set-default multi-user.target
  rm -rf /root/omnid-test
'

# Boot with systemd as PID 1. The checks power the machine off when done.
echo "system test: booting $SUITE with systemd (console log: $WORK/console.log)"
rm -f "$ROOT/var/log/omnid-system-test.txt"
start=$SECONDS
rc=0
timeout 900 "${nspawn[@]}" -b --private-network --system-call-filter=bpf --console=passive >"$WORK/console.log" 2>&1 || rc=$?
echo "system test: booted system ran $((SECONDS - start)) s (nspawn exit $rc)"
RESULTS=$ROOT/var/log/omnid-system-test.txt
if [ ! -s "$RESULTS" ]; then
  echo "system test: no results (the checks did not run); last console lines:"; tail -30 "$WORK/console.log"; exit 1
fi
cat "$RESULTS"
cp "$RESULTS" "$WORK/results.txt"; cp "$ROOT/var/log/omnid-journal.txt" "$WORK/omnid-journal.txt" 2>/dev/null || true
if ! tail -1 "$RESULTS" | grep -qE '^[0-9]+ passed, 0 failed$'; then
  echo "system test: FAILED (omnid's journal: $WORK/omnid-journal.txt)"; exit 1
fi
