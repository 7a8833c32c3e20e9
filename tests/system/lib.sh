# Shared by tests/system/run.sh and tests/system/trixie.sh (sourced): the cache directory and minimal Debian
# root filesystems made with mmdebstrap, kept as tarballs by their recipe.

# cache_dir FALLBACK: /var/cache/omnid-system-test when it can be written, else FALLBACK ($OMNI_SYSTEM_CACHE wins).
cache_dir() {
  local dir=${OMNI_SYSTEM_CACHE:-/var/cache/omnid-system-test}
  if mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ]; then echo "$dir"; else mkdir -p "$1" && echo "$1"; fi
}

# base_rootfs CACHE SUITE MIRROR PACKAGES DEST: DEST becomes a fresh minbase SUITE with PACKAGES (comma list).
# The tarball is made once per recipe and remade after 7 days (security updates).
base_rootfs() {
  local cache=$1 suite=$2 mirror=$3 packages=$4 dest=$5
  local key; key=$(echo "$suite $mirror $packages" | sha256sum | cut -c1-12)
  local tarball=$cache/base-$suite-$key.tar
  if [ -f "$tarball" ] && [ -z "$(find "$tarball" -mtime +7)" ]; then
    echo "base rootfs $tarball (cached)"
  else
    echo "making the base rootfs ($suite: $packages) with mmdebstrap"
    mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" "$suite" "$tarball.tmp" "$mirror"
    mv "$tarball.tmp" "$tarball"
  fi
  rm -rf "$dest" && mkdir -p "$dest" && tar -C "$dest" -xf "$tarball"
}
