#!/usr/bin/env bash
# End-to-end on a real cluster: kind + the Docker image + the Helm chart, as a user installs it.
#
# Usage: hack/kind-e2e.sh [run|manifests]        (make kind-e2e runs `run`)
#
#   run        create a kind cluster (or reuse it), build the image and load it into the cluster, deploy the
#              KMS emulator from the same image (or use real KMS, below), `helm upgrade --install` the chart,
#              apply examples/seed.yaml, wait until it is Ready and print `kubectl get kmskeys`.
#   manifests  print every manifest `run` applies (emulator and its CA, credentials Secret, chart, seed) and
#              exit; needs only helm and python3, so the tests check these manifests on machines without Docker.
#
# The emulator speaks HTTPS only, as real KMS: a CA is made here first (python3 with the project installed,
# kms_emulator.tls; kept in KIND_TLS_DIR and reused), its certificate and key go to the emulator in a Secret
# (kms-emulator --tls-ca-dir, serving kms-emulator.<namespace>.svc), and the CA certificate goes to the
# operator the way users hand it a private CA: a ConfigMap named in the chart's kms.caBundle.configMapName.
#
# Needs Docker, kind, kubectl, helm and python3 on PATH (make kind-e2e puts .venv/bin first).
#
# Environment:
#   KIND_CLUSTER   cluster name (default kmskey-e2e); an existing cluster of that name is reused
#   KEEP_CLUSTER   1 = leave the cluster running afterwards (default: delete it if this run created it)
#   IMAGE          image name:tag to build and load (default kmskey-operator:e2e)
#   NAMESPACE      namespace of the operator and the emulator (default kmskey-system)
#   KIND_TLS_DIR   where the emulator's CA is made and kept (default .dev/kind-e2e-tls in the repository)
#   PYTHON         the python3 that can import kms_emulator (default: python3 on PATH)
#   ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET
#                  when both are set, real Alibaba Cloud KMS is used instead of the emulator, in region
#                  ALIBABA_CLOUD_REGION_ID (default cn-hangzhou), and the seed gets a real key: mind its cost
#                  and delete it (its deletionPolicy is Retain). The seed's dkmsInstanceId must be yours.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CHART="$ROOT/deploy/helm/kmskey-operator"
SEED="$ROOT/examples/seed.yaml"
KIND_CLUSTER="${KIND_CLUSTER:-kmskey-e2e}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
IMAGE="${IMAGE:-kmskey-operator:e2e}"
NAMESPACE="${NAMESPACE:-kmskey-system}"
RELEASE="kmskey-operator"
SEED_NAMESPACE="kmskey-e2e"
REGION="${ALIBABA_CLOUD_REGION_ID:-cn-hangzhou}"
EMULATOR_KEY_ID="kind-e2e-access-key"
EMULATOR_KEY_SECRET="kind-e2e-access-secret"
EMULATOR_INSTANCE="kst-hzz62ee5fe3b7ifgq5hmg" # the seed example's dkmsInstanceId
EMULATOR_PORT=8080
EMULATOR_CA="kms-emulator-ca" # Secret: the emulator's CA certificate and key
KMS_CA_CONFIG_MAP="kms-ca"    # ConfigMap: the CA certificate the operator trusts (kms.caBundle)
KIND_TLS_DIR="${KIND_TLS_DIR:-$ROOT/.dev/kind-e2e-tls}"
PYTHON="${PYTHON:-python3}"

log() { printf '[kind-e2e] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

real_kms() { [ -n "${ALIBABA_CLOUD_ACCESS_KEY_ID:-}" ] && [ -n "${ALIBABA_CLOUD_ACCESS_KEY_SECRET:-}" ]; }

image_repository() { printf '%s' "${IMAGE%:*}"; }
image_tag() { printf '%s' "${IMAGE##*:}"; }

# The emulator's CA (ca.crt, ca.key in KIND_TLS_DIR): made once by the emulator's own TLS code, then reused.
emulator_ca() {
  if [ ! -s "$KIND_TLS_DIR/ca.crt" ] || [ ! -s "$KIND_TLS_DIR/ca.key" ]; then
    "$PYTHON" -c 'import sys; from kms_emulator import tls; tls.prepare(sys.argv[1])' "$KIND_TLS_DIR" ||
      die "could not make the emulator's CA with $PYTHON (it needs the project installed: make venv)"
  fi
}

b64() { base64 <"$1" | tr -d '\n'; }

# The CA as the emulator reads it (a Secret) and as the operator trusts it (a ConfigMap, kms.caBundle).
emulator_ca_manifests() {
  emulator_ca
  cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: $EMULATOR_CA
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/name: kms-emulator, app.kubernetes.io/part-of: kmskey-e2e}
type: Opaque
data:
  ca.crt: $(b64 "$KIND_TLS_DIR/ca.crt")
  ca.key: $(b64 "$KIND_TLS_DIR/ca.key")
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: $KMS_CA_CONFIG_MAP
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/part-of: kmskey-e2e}
data:
  ca.crt: |
$(sed 's/^/    /' "$KIND_TLS_DIR/ca.crt")
EOF
}

# The emulator: a Deployment + Service running `kms-emulator` from the operator's own image, over HTTPS.
emulator_manifest() {
  cat <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: kms-emulator
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/name: kms-emulator, app.kubernetes.io/part-of: kmskey-e2e}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: kms-emulator}
  template:
    metadata:
      labels: {app.kubernetes.io/name: kms-emulator, app.kubernetes.io/part-of: kmskey-e2e}
    spec:
      automountServiceAccountToken: false
      enableServiceLinks: false
      securityContext:
        runAsNonRoot: true
        runAsUser: 65532
        runAsGroup: 65532
        fsGroup: 65532
        seccompProfile: {type: RuntimeDefault}
      volumes:
        - name: ca
          secret: {secretName: $EMULATOR_CA, defaultMode: 0440}
        - name: tls
          emptyDir: {medium: Memory, sizeLimit: 1Mi}
      containers:
        - name: kms-emulator
          image: $IMAGE
          imagePullPolicy: Never
          command: [kms-emulator]
          args:
            - --host=0.0.0.0
            - --port=$EMULATOR_PORT
            - --region=$REGION
            - --access-key-id=$EMULATOR_KEY_ID
            - --access-key-secret=$EMULATOR_KEY_SECRET
            - --instance-id=$EMULATOR_INSTANCE
            - --tls-ca-dir=/etc/kms-emulator/ca
            - --tls-dir=/var/run/kms-emulator/tls
            - --tls-name=kms-emulator.$NAMESPACE.svc
            - --tls-name=kms-emulator.$NAMESPACE.svc.cluster.local
            - --log-level=INFO
          volumeMounts:
            - {name: ca, mountPath: /etc/kms-emulator/ca, readOnly: true}
            - {name: tls, mountPath: /var/run/kms-emulator/tls}
          ports:
            - {name: kms, containerPort: $EMULATOR_PORT, protocol: TCP}
          readinessProbe:
            tcpSocket: {port: kms}
            periodSeconds: 2
          securityContext:
            allowPrivilegeEscalation: false
            readOnlyRootFilesystem: true
            capabilities: {drop: [ALL]}
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {memory: 256Mi}
---
apiVersion: v1
kind: Service
metadata:
  name: kms-emulator
  namespace: $NAMESPACE
  labels: {app.kubernetes.io/name: kms-emulator, app.kubernetes.io/part-of: kmskey-e2e}
spec:
  selector: {app.kubernetes.io/name: kms-emulator}
  ports:
    - {name: kms, port: $EMULATOR_PORT, targetPort: kms, protocol: TCP}
EOF
}

# The Secret the chart reads access keys from (credentials.source=secret, the chart's default name).
credentials_manifest() {
  local key_id="$EMULATOR_KEY_ID" key_secret="$EMULATOR_KEY_SECRET"
  if real_kms; then
    key_id="$ALIBABA_CLOUD_ACCESS_KEY_ID"
    key_secret="$ALIBABA_CLOUD_ACCESS_KEY_SECRET"
  fi
  cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: kmskey-operator-credentials
  namespace: $NAMESPACE
type: Opaque
stringData:
  ALIBABA_CLOUD_ACCESS_KEY_ID: "$key_id"
  ALIBABA_CLOUD_ACCESS_KEY_SECRET: "$key_secret"
EOF
}

# Chart values, as helm arguments (one per line, so callers can read them into an array).
helm_values() {
  printf '%s\n' \
    --set "image.repository=$(image_repository)" \
    --set "image.tag=$(image_tag)" \
    --set image.pullPolicy=Never \
    --set "kms.regionId=$REGION" \
    --set credentials.source=secret \
    --set credentials.secret.name=kmskey-operator-credentials \
    --set logging.format=text
  if ! real_kms; then
    printf '%s\n' \
      --set "kms.endpoint=kms-emulator.$NAMESPACE.svc:$EMULATOR_PORT" \
      --set kms.protocol=https \
      --set "kms.caBundle.configMapName=$KMS_CA_CONFIG_MAP" \
      --set credentials.ecsMetadataDisabled=true
  fi
}

seed_manifest() {
  if [ -f "$SEED" ]; then
    cat "$SEED"
  else
    cat <<EOF
apiVersion: kms.alicloud.dev/v1alpha1
kind: KmsKey
metadata:
  name: seed
spec:
  description: kind e2e seed
  keySpec: Aliyun_AES_256
  keyUsage: ENCRYPT/DECRYPT
  deletionPolicy: Retain
EOF
  fi
}

seed_name() { seed_manifest | awk '/^metadata:/{m=1; next} m && /^  name:/{print $2; exit}'; }

print_manifests() {
  local -a values
  mapfile -t values < <(helm_values)
  if ! real_kms; then
    emulator_ca_manifests
    echo "---"
    emulator_manifest
    echo "---"
  fi
  credentials_manifest
  echo "---"
  helm template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values[@]}"
  echo "---"
  seed_manifest
}

dump_state() {
  log "state of the cluster after the failure:"
  kubectl get pods,svc,kmskeys -A -o wide >&2 || true
  kubectl -n "$NAMESPACE" logs "deployment/$RELEASE" --tail=100 >&2 || true
  if ! real_kms; then kubectl -n "$NAMESPACE" logs deployment/kms-emulator --tail=50 >&2 || true; fi
  kubectl -n "$SEED_NAMESPACE" describe kmskey >&2 || true
}

run() {
  local tool
  for tool in docker kind kubectl helm; do
    command -v "$tool" >/dev/null || die "$tool is not on PATH (kind-e2e needs Docker, kind, kubectl and helm)"
  done
  if ! real_kms; then emulator_ca; fi # before anything is created: a missing python3 stops the run here
  local created=0
  if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
    log "reusing kind cluster $KIND_CLUSTER"
  else
    log "creating kind cluster $KIND_CLUSTER"
    kind create cluster --name "$KIND_CLUSTER" --wait 180s
    created=1
  fi
  cleanup() {
    local status=$?
    [ "$status" -eq 0 ] || dump_state
    if [ "$created" -eq 1 ] && [ "$KEEP_CLUSTER" != "1" ]; then
      log "deleting kind cluster $KIND_CLUSTER (KEEP_CLUSTER=1 keeps it)"
      kind delete cluster --name "$KIND_CLUSTER" || true
    fi
    exit "$status"
  }
  trap cleanup EXIT
  kubectl config use-context "kind-$KIND_CLUSTER" >/dev/null

  log "building $IMAGE"
  docker build --tag "$IMAGE" --build-arg "REVISION=$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" "$ROOT"
  kind load docker-image "$IMAGE" --name "$KIND_CLUSTER"

  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  kubectl create namespace "$SEED_NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
  if real_kms; then
    log "using real Alibaba Cloud KMS in $REGION"
  else
    log "deploying the KMS emulator from $IMAGE (HTTPS, its CA from $KIND_TLS_DIR)"
    emulator_ca_manifests | kubectl apply -f -
    emulator_manifest | kubectl apply -f -
    kubectl -n "$NAMESPACE" rollout status deployment/kms-emulator --timeout=180s
  fi
  credentials_manifest | kubectl apply -f -

  local -a values
  mapfile -t values < <(helm_values)
  log "helm upgrade --install $RELEASE"
  helm upgrade --install "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${values[@]}" --wait --timeout 5m

  local name
  name="$(seed_name)"
  log "applying the seed KmsKey $SEED_NAMESPACE/$name"
  seed_manifest | kubectl -n "$SEED_NAMESPACE" apply -f -
  kubectl -n "$SEED_NAMESPACE" wait --for=condition=Ready "kmskey/$name" --timeout=180s
  kubectl get kmskeys --all-namespaces
  log "passed"
}

case "${1:-run}" in
  run) run ;;
  manifests) print_manifests ;;
  *) die "usage: $0 [run|manifests]" ;;
esac
