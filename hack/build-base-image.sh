#!/usr/bin/env bash
# Build (once) and cache the Debian bases the image builds on when the official python image cannot be
# pulled (no Docker, no registry): debootstrap --variant=minbase of Debian bookworm with Python 3.11.
#
# Usage: hack/build-base-image.sh        prints RUNTIME_ROOTFS=<tar> and BUILD_ROOTFS=<tar> as its last lines
#
#   runtime  python3 (3.11) + ca-certificates: what the final stage runs on (no pip, no setuptools)
#   build    the runtime packages + python3-pip: the build stage, which installs the wheels into a venv
#
# Each is a root-filesystem tarball under ~/.cache/kmskey-operator/base/<key>, keyed by suite and package
# list; the .debs are kept beside them, so a second base (or a rebuild) downloads nothing. Needs root and
# debootstrap (hack/install-node-deps.sh installs it).
set -Eeuo pipefail

SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
RUNTIME_PACKAGES="python3,ca-certificates"
BUILD_PACKAGES="$RUNTIME_PACKAGES,python3-pip"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
KEY="debian-$SUITE-minbase-$(printf '%s|%s' "$RUNTIME_PACKAGES" "$BUILD_PACKAGES" | sha256sum | cut -c1-12)"
OUT="$CACHE_ROOT/base/$KEY"
log() { printf '[base-image] %s\n' "$*" >&2; }
trap 'log "ERROR: building the Debian base failed (output above). Missing piece: $OUT/*.tar; needs root and debootstrap (hack/install-node-deps.sh)"' ERR

command -v debootstrap >/dev/null || { log "ERROR: debootstrap is not installed: run hack/install-node-deps.sh"; exit 1; }
mkdir -p "$OUT/debs"
exec 9>"$OUT/.lock"
flock 9

# build_rootfs NAME PACKAGES: debootstrap into a scratch directory, trim what a container never uses, tar it.
build_rootfs() {
  local name="$1" packages="$2" target="$OUT/$1.tar"
  if [ -s "$target" ]; then log "cached: $target"; return; fi
  local root began
  root="$(mktemp -d "$OUT/.rootfs-$name-XXXXXX")"
  began=$(date +%s)
  log "debootstrap --variant=minbase $SUITE with $packages (first time: about a minute)"
  if ! debootstrap --variant=minbase --include="$packages" --cache-dir="$OUT/debs" "$SUITE" "$root" "$MIRROR" \
      >"$OUT/$name.debootstrap.log" 2>&1; then
    tail -n 30 "$OUT/$name.debootstrap.log" >&2
    rm -rf "$root"
    false
  fi
  # Documentation, locales, apt's lists and caches: nothing in a container reads them.
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/log/*
  # Reproducible-ish: the same content gives the same tar (sorted, fixed owner and times).
  tar --sort=name --numeric-owner --mtime='2024-01-01 00:00:00' -C "$root" -cf "$target.tmp" .
  rm -rf "$root"
  mv "$target.tmp" "$target"
  log "$name base built in $(( $(date +%s) - began ))s: $(du -h "$target" | cut -f1)"
}

build_rootfs runtime "$RUNTIME_PACKAGES"
build_rootfs build "$BUILD_PACKAGES"
echo "RUNTIME_ROOTFS=$OUT/runtime.tar"
echo "BUILD_ROOTFS=$OUT/build.tar"
