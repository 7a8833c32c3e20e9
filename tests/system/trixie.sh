#!/usr/bin/env bash
# make test-trixie: builds omnid and runs `make test` (every CPU test; `make $TRIXIE_TARGET` when set, e.g.
# test-asan) in a fresh Debian 13 "trixie" root, the way a newcomer would (make deps installs what is missing
# from the archive). With `arm64`: also cross-builds the non-CUDA engine for arm64 with Debian's cross toolchain
# (multiarch -dev packages) and runs the engine's unit and golden tests under qemu-aarch64.
#
#   tests/system/trixie.sh [native] [arm64]        (root; mmdebstrap, systemd-container, qemu-user-static)
#
# The repository is copied in as it is checked out (tracked and untracked, not ignored files). ccache's
# directory and apt's downloads are kept in the cache (tests/system/lib.sh), so a second run is mostly a cache hit.
set -euo pipefail
SRC=$(realpath "$(dirname "$0")/../..")
WORK=${OMNI_TRIXIE_WORK:-$SRC/build-trixie}
MIRROR=${OMNI_DEBIAN_MIRROR:-http://deb.debian.org/debian}
JOBS=${JOBS:-$(nproc)}
steps=("$@"); [ ${#steps[@]} -gt 0 ] || steps=(native)
if [ "$(id -u)" != 0 ]; then echo "tests/system/trixie.sh: needs root (mmdebstrap, systemd-nspawn)" >&2; exit 2; fi
. "$SRC/tests/system/lib.sh"
CACHE=$(cache_dir "$WORK/cache")
ROOT=$WORK/root
mkdir -p "$CACHE/apt-trixie" "$CACHE/ccache-trixie"

base_rootfs "$CACHE" trixie "$MIRROR" build-essential,make,ccache,ca-certificates "$ROOT"
mkdir -p "$ROOT/src"
(cd "$SRC" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$ROOT/src" -xf -
rm -f "$ROOT/etc/apt/apt.conf.d/docker-clean"

run_in() {  # network on (apt), no boot
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn --quiet --register=no --keep-unit -D "$ROOT" --chdir=/src \
    --bind="$CACHE/apt-trixie:/var/cache/apt/archives" --bind="$CACHE/ccache-trixie:/ccache" \
    --bind-ro=/usr/bin/qemu-aarch64-static \
    --setenv=CCACHE_DIR=/ccache --setenv=CMAKE_C_COMPILER_LAUNCHER=ccache --setenv=CMAKE_CXX_COMPILER_LAUNCHER=ccache \
    --setenv=DEBIAN_FRONTEND=noninteractive "$@"
}

for step in "${steps[@]}"; do
  case $step in
  native)
    start=$SECONDS
    target=${TRIXIE_TARGET:-test}
    echo "trixie: make $target (deps from the archive, build, every CPU test)"
    run_in /bin/bash -c 'rc=0; make '"$target"' JOBS='"$JOBS"' >test-trixie.log 2>&1 || rc=$?
      grep -E "^-- omnid|^make: |tests passed|\(Failed\)|\*\*\*|error:" test-trixie.log | tail -40; exit $rc'
    echo "trixie: make $target passed in $((SECONDS - start)) s"
    ;;
  arm64)
    start=$SECONDS
    [ -x /usr/bin/qemu-aarch64-static ] || { echo "trixie.sh arm64: qemu-user-static is not installed" >&2; exit 2; }
    echo "trixie: arm64 cross build of the engine, unit and golden tests under qemu-aarch64"
    run_in /bin/bash -euo pipefail -c '
      dpkg --add-architecture arm64 && apt-get update -qq
      apt-get install -y -qq --no-install-recommends g++-aarch64-linux-gnu cmake pkg-config xz-utils \
        nlohmann-json3-dev libutf8proc-dev:arm64 libfftw3-dev:arm64 libsoxr-dev:arm64 libgtest-dev:arm64 \
        libpng-dev:arm64 libjpeg62-turbo-dev:arm64 libstdc++6:arm64 libgomp1:arm64 >/dev/null
      cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOMNI_CUDA=OFF >build-arm64.log 2>&1 || { tail -20 build-arm64.log; exit 1; }
      cmake --build build-arm64 -j '"$JOBS"' --target omni_unit_tests omni_golden_tests >>build-arm64.log 2>&1 ||
        { grep -E "error|Error" build-arm64.log | head -20; exit 1; }
      readelf -h build-arm64/tests/unit/omni_unit_tests | grep -q AArch64 || { echo "omni_unit_tests is not an arm64 binary"; exit 1; }
      for t in unit/omni_unit_tests golden/omni_golden_tests; do
        rc=0; OMNI_TEST_EMULATED=1 qemu-aarch64-static -L / build-arm64/tests/$t >build-arm64/${t#*/}.log 2>&1 || rc=$?
        echo "$t under qemu-aarch64: exit $rc; $(grep -E "^\[ *(PASSED|FAILED) " build-arm64/${t#*/}.log | tr "\n" " ")"
        [ $rc = 0 ] || { grep -E "^\[  FAILED" build-arm64/${t#*/}.log | head; exit 1; }
      done
    '
    echo "trixie: arm64 step passed in $((SECONDS - start)) s"
    ;;
  *) echo "tests/system/trixie.sh: unknown step '$step' (native, arm64)" >&2; exit 2 ;;
  esac
done
