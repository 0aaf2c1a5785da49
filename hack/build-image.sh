#!/usr/bin/env bash
# Build the operator image from the Dockerfile without Docker: buildah (Debian's package) with
# `bud --isolation chroot`, on the Debian bases hack/build-base-image.sh builds, from a wheelhouse, so the
# build itself needs no network. The result is an OCI archive (what the test node loads into containerd).
#
# Usage: hack/build-image.sh               prints IMAGE_ARCHIVE=<path> and IMAGE=<name> as its last lines
#
# Environment:
#   IMAGE          name:tag (default kmskey-operator:<version in pyproject.toml>)
#   IMAGE_ARCHIVE  where the OCI archive goes (default .build/image/kmskey-operator.oci.tar)
#   BASE           local (default): the debootstrap bases; official: the Dockerfile's default base
#                  (python:3.11-slim-bookworm pinned by digest), pulled from Docker Hub by buildah
#
# buildah's storage lives under ~/.cache/kmskey-operator/buildah (never /var/lib/containers), the wheelhouse
# under ~/.cache/kmskey-operator/wheels/<hash of constraints.txt and pyproject.toml>.
set -Eeuo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml")"
IMAGE="${IMAGE:-kmskey-operator:$VERSION}"
IMAGE_ARCHIVE="${IMAGE_ARCHIVE:-$ROOT/.build/image/kmskey-operator.oci.tar}"
BASE="${BASE:-local}"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || PY=python3
log() { printf '[image] %s\n' "$*" >&2; }
step="start"
trap 'log "ERROR: the image build failed during: $step (output above). Missing piece: the image $IMAGE at $IMAGE_ARCHIVE"' ERR

command -v buildah >/dev/null || { log "ERROR: buildah is not installed: run hack/install-node-deps.sh"; exit 1; }
mkdir -p "$CACHE_ROOT/buildah" "$(dirname "$IMAGE_ARCHIVE")"
RUNROOT="$(mktemp -d "${TMPDIR:-/tmp}/kmskey-buildah-run-XXXXXX")"
trap 'rm -rf "$RUNROOT"' EXIT
# One build at a time per storage (engineers share a machine).
exec 9>"$CACHE_ROOT/buildah/.lock"
flock 9
bah() { buildah --root "$CACHE_ROOT/buildah/storage" --runroot "$RUNROOT" --storage-driver overlay "$@"; }
began=$(date +%s)

# -- the wheelhouse: every runtime dependency as a wheel, plus what builds the project (setuptools, wheel) --
step="building the wheelhouse"
key=$(cat "$ROOT/constraints.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)
WHEELS="$CACHE_ROOT/wheels/$key"
if [ ! -f "$WHEELS/.complete" ]; then
  log "wheelhouse $WHEELS (first time: downloads the dependencies, builds the sdists into wheels)"
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  work="$(mktemp -d)"
  # The project's own metadata, without its sources: `pip wheel` of it resolves exactly the runtime
  # dependencies at the pinned versions.
  cp "$ROOT/pyproject.toml" "$ROOT/constraints.txt" "$ROOT/README.md" "$work/"
  mkdir -p "$work/operator"
  "$PY" -m pip wheel --quiet --wheel-dir "$WHEELS" --constraint "$ROOT/constraints.txt" "$work" >&2
  rm -f "$WHEELS"/kmskey_operator-*.whl
  "$PY" -m pip download --quiet --only-binary=:all: --dest "$WHEELS" "setuptools>=77" wheel >&2
  rm -rf "$work"
  touch "$WHEELS/.complete"
fi

# -- the bases ---------------------------------------------------------------------------------------------
build_args=()
if [ "$BASE" = "local" ]; then
  step="building the Debian bases (hack/build-base-image.sh)"
  bases="$(bash "$ROOT/hack/build-base-image.sh")"
  runtime_tar="$(sed -n 's/^RUNTIME_ROOTFS=//p' <<<"$bases")"
  build_tar="$(sed -n 's/^BUILD_ROOTFS=//p' <<<"$bases")"
  base_key="$(basename "$(dirname "$runtime_tar")")"
  step="importing the Debian bases into buildah"
  for kind in runtime build; do
    name="localhost/kmskey-base-$kind:$base_key"
    rootfs="$runtime_tar"
    [ "$kind" = build ] && rootfs="$build_tar"
    if ! bah inspect --type image "$name" >/dev/null 2>&1; then
      container="$(bah from scratch)"
      bah add "$container" "$rootfs" / >/dev/null
      bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env LANG=C.UTF-8 \
        --label "org.opencontainers.image.description=Debian $base_key ($kind), built by hack/build-base-image.sh" \
        "$container"
      bah commit --quiet --rm "$container" "$name" >/dev/null
      log "imported $name"
    fi
    [ "$kind" = runtime ] && build_args+=(--build-arg "PYTHON_IMAGE=$name")
    [ "$kind" = build ] && build_args+=(--build-arg "BUILD_IMAGE=$name")
  done
elif [ "$BASE" != "official" ]; then
  log "ERROR: BASE must be local or official, not '$BASE'"; exit 1
fi

# -- the image ---------------------------------------------------------------------------------------------
step="buildah bud --isolation chroot"
log "buildah bud --isolation chroot -t $IMAGE (base: $BASE)"
bah bud --quiet --isolation chroot --pull-never=false --tag "$IMAGE" \
  "${build_args[@]}" \
  --build-arg "VERSION=$VERSION" \
  --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --build-arg "PIP_INSTALL_ARGS=--no-index --find-links /wheels" \
  --volume "$WHEELS:/wheels:ro" \
  "$ROOT" >&2
step="writing the OCI archive"
# The archive names the image as kubelet and containerd spell a short name: docker.io/library/NAME:TAG.
reference="docker.io/library/$IMAGE"
if [[ "$IMAGE" == */* ]]; then
  case "${IMAGE%%/*}" in
    *.*|*:*|localhost) reference="$IMAGE" ;;
    *) reference="docker.io/$IMAGE" ;;
  esac
fi
rm -f "$IMAGE_ARCHIVE"
bah push --quiet "$IMAGE" "oci-archive:$IMAGE_ARCHIVE:$reference" >&2
size=$(bah images --format '{{.Size}}' "$IMAGE" | head -n1)
log "built $IMAGE in $(( $(date +%s) - began ))s: $size unpacked, $(du -h "$IMAGE_ARCHIVE" | cut -f1) archive"
echo "IMAGE_SIZE=$size"
echo "IMAGE=$reference"
echo "IMAGE_ARCHIVE=$IMAGE_ARCHIVE"
