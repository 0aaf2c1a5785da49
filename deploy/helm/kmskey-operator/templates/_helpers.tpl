{{/* Names, labels and small computed values shared by the templates. */}}

{{- define "kmskey-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: "<release>-<chart>", or the release name when it already contains the chart name. */}}
{{- define "kmskey-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kmskey-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmskey-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kmskey-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kmskey-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kmskey-operator
{{- end }}

{{- define "kmskey-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kmskey-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kmskey-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "kmskey-operator.peeringName" -}}
{{- default (include "kmskey-operator.fullname" .) .Values.ha.peeringName }}
{{- end }}

{{- define "kmskey-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "kmskey-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kmskey-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "kmskey-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret the webhook's serving certificate is read from (tls.crt, tls.key, ca.crt). */}}
{{- define "kmskey-operator.webhookSecretName" -}}
{{- if eq .Values.webhook.certificate.source "secret" }}
{{- .Values.webhook.certificate.secretName }}
{{- else }}
{{- printf "%s-webhook-tls" (include "kmskey-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "kmskey-operator.webhookCertificateName" -}}
{{- printf "%s-webhook" (include "kmskey-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The path kopf serves the validating handler on: its handler id (webhook.HANDLER_ID). */}}
{{- define "kmskey-operator.webhookPath" -}}
/validate-kmskey
{{- end }}

{{/* Where the webhook Secret is mounted; KMSKEY_WEBHOOK_SECRET_DIR points here. */}}
{{- define "kmskey-operator.webhookSecretDir" -}}
/etc/kmskey-operator/webhook-tls
{{- end }}

{{/* Where the extra KMS CA bundle (kms.caBundle) is mounted; the file inside is always ca.crt. */}}
{{- define "kmskey-operator.kmsCaBundleDir" -}}
/etc/kmskey-operator/kms-ca
{{- end }}

{{/* RRSA: where the projected OIDC token is mounted (the path ack-pod-identity-webhook uses too). */}}
{{- define "kmskey-operator.rrsaTokenDir" -}}
/var/run/secrets/ack.alibabacloud.com/rrsa-tokens
{{- end }}

{{/*
The helm-generated webhook certificate: reused from the live Secret when it exists (so upgrades keep the
CA that the ValidatingWebhookConfiguration trusts), generated once otherwise. Returns JSON of a dict with
caCert, tlsCert, tlsKey (PEM). Memoised on .Release, which every template of this render shares, so the
Secret and the configuration's caBundle (two files) get the same CA.
*/}}
{{- define "kmskey-operator.generatedCertificate" -}}
{{- if not (hasKey .Release "kmskeyWebhookCertificate") }}
{{- $_ := set .Release "kmskeyWebhookCertificate" (include "kmskey-operator.generateCertificate" .) }}
{{- end }}
{{- get .Release "kmskeyWebhookCertificate" }}
{{- end }}

{{/* Generate (or read back) the certificate; call only through kmskey-operator.generatedCertificate. */}}
{{- define "kmskey-operator.generateCertificate" -}}
{{- $secretName := include "kmskey-operator.webhookSecretName" . }}
{{- $existing := lookup "v1" "Secret" .Release.Namespace $secretName }}
{{- if and $existing $existing.data (index $existing.data "ca.crt") }}
{{- dict "caCert" (index $existing.data "ca.crt" | b64dec) "tlsCert" (index $existing.data "tls.crt" | b64dec) "tlsKey" (index $existing.data "tls.key" | b64dec) | toJson }}
{{- else }}
{{- $service := include "kmskey-operator.webhookServiceName" . }}
{{- $cn := printf "%s.%s.svc" $service .Release.Namespace }}
{{- $sans := list $service (printf "%s.%s" $service .Release.Namespace) $cn (printf "%s.cluster.local" $cn) }}
{{- $ca := genCA "kmskey-operator webhook CA" (int .Values.webhook.certificate.validityDays) }}
{{- $cert := genSignedCert $cn nil $sans (int .Values.webhook.certificate.validityDays) $ca }}
{{- dict "caCert" $ca.Cert "tlsCert" $cert.Cert "tlsKey" $cert.Key | toJson }}
{{- end }}
{{- end }}

{{/*
RBAC rules on namespaced resources, shared by the ClusterRole (all namespaces) and the per-namespace Roles.
Each verb is one the operator was seen to use, running as this ServiceAccount (tests/e2e/test_helm.py).
*/}}
{{- define "kmskey-operator.namespacedRules" -}}
# kopf lists and watches KmsKeys, and patches them: the finalizer, its progress annotations. A drift check
# whose status write meets a newer version (409) reads that version by name (handlers.py).
- apiGroups: ["kms.alicloud.dev"]
  resources: ["kmskeys"]
  verbs: ["get", "list", "watch", "patch"]
# The status stanza is written through the status subresource (the CRD declares one).
- apiGroups: ["kms.alicloud.dev"]
  resources: ["kmskeys/status"]
  verbs: ["patch"]
# KmsProviderConfigs are followed with a watch (an index in memory), read by name before a new key's
# account is decided (the watch may lag behind the apply), and their status is written.
- apiGroups: ["kms.alicloud.dev"]
  resources: ["kmsproviderconfigs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kms.alicloud.dev"]
  resources: ["kmsproviderconfigs/status"]
  verbs: ["patch"]
# Events (Created, DriftCorrected, AccessDenied, ...) are posted with the core v1 API, never updated.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if and .Values.ha.enabled .Values.watchNamespaces }}
# Namespaced peering: kopf watches the KopfPeering objects and patches its keep-alive into its own.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  resourceNames: [{{ include "kmskey-operator.peeringName" . | quote }}]
  verbs: ["patch"]
{{- end }}
{{- end }}

{{/*
The namespaces where provider configs may read Secrets and request ServiceAccount tokens: the release
namespace, the watched namespaces, and providerConfigs.namespaces (each once, in that order).
*/}}
{{- define "kmskey-operator.providerConfigNamespaces" -}}
{{- $all := list .Release.Namespace }}
{{- range concat .Values.watchNamespaces .Values.providerConfigs.namespaces }}
{{- if not (has . $all) }}{{ $all = append $all . }}{{ end }}
{{- end }}
{{- join "," $all }}
{{- end }}
