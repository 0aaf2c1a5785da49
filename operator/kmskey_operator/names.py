"""Every name the operator shares with Kubernetes and KMS, written once.

The API group, the finalizer, annotation keys and the reserved ownership tag are part of the
operator's contract with users: changing one here is a breaking change.
"""

from typing import Final

GROUP: Final = "kms.alicloud.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "KmsKey"
PLURAL: Final = "kmskeys"
SINGULAR: Final = "kmskey"
SHORT_NAME: Final = "kk"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

FINALIZER: Final = f"{GROUP}/finalizer"
PAUSED_ANNOTATION: Final = f"{GROUP}/paused"
RESYNC_ANNOTATION: Final = f"{GROUP}/resync-interval"

TAKE_OVER_ANNOTATION: Final = f"{GROUP}/take-over-claim"
"""Value: the UID of the KmsKey whose stale claim this resource may take over (see claims.py)."""

# The claim: tags on a KMS key that name the one KmsKey managing it (written and read in claims.py).
# Every tag key under this prefix belongs to the operator: refused in spec.tags, never diffed or removed.
OPERATOR_TAG_PREFIX: Final = f"{GROUP}/"
# The lookup key of a claim (and the only claim tag of versions before claims): before any CreateKey the
# operator looks the resource's UID up (ListKeys with a TagKey/TagValue filter), so a crash between
# CreateKey and the status write never yields a second key.
OWNER_TAG_KEY: Final = f"{GROUP}/owner-uid"
OWNER_CLUSTER_TAG_KEY: Final = f"{GROUP}/owner-cluster"
OWNER_NAMESPACE_TAG_KEY: Final = f"{GROUP}/owner-namespace"
OWNER_NAME_TAG_KEY: Final = f"{GROUP}/owner-name"
# Present (value "true") on a key claimed by adoption rather than created by its claimant.
ADOPTED_TAG_KEY: Final = f"{GROUP}/adopted"

# Tag keys KMS reserves for itself; users may not set them and the diff ignores them.
RESERVED_TAG_PREFIXES: Final = ("aliyun", "acs:")

# Condition types (Kubernetes API conventions: PascalCase adjectives).
READY: Final = "Ready"
SYNCED: Final = "Synced"
# kstatus's standard conditions (sigs.k8s.io/cli-utils), read by Flux and kstatus-based tools: Stalled=True
# means "failed, needs a person", Reconciling=True "a transient failure is being retried".
STALLED: Final = "Stalled"
RECONCILING: Final = "Reconciling"

# How the operator names itself in Events (reportingComponent, source.component) and their generated names.
COMPONENT: Final = "kmskey-operator"

# Event and condition reasons: one CamelCase word each.
REASON_CREATED: Final = "Created"
REASON_ADOPTED: Final = "Adopted"
REASON_AVAILABLE: Final = "Available"
REASON_UPDATED: Final = "Updated"
REASON_DRIFT_CORRECTED: Final = "DriftCorrected"
REASON_RECONCILE_SUCCESS: Final = "ReconcileSuccess"
REASON_RECONCILING: Final = "Reconciling"
REASON_KEY_NOT_FOUND: Final = "KeyNotFound"
REASON_KEY_PENDING_DELETION: Final = "KeyPendingDeletion"
REASON_KEY_DISABLED: Final = "KeyDisabled"
REASON_KEY_MATERIAL_PENDING: Final = "KeyMaterialPending"
REASON_FORCE_NEW_CONFLICT: Final = "ForceNewConflict"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_KMS_REJECTED: Final = "KmsRejected"
REASON_KMS_UNAVAILABLE: Final = "KmsUnavailable"
REASON_THROTTLED: Final = "Throttled"
REASON_ACCESS_DENIED: Final = "AccessDenied"
REASON_PAUSED: Final = "Paused"
REASON_OBSERVE_ONLY: Final = "ObserveOnly"
REASON_RETAINED: Final = "Retained"
REASON_DELETION_SCHEDULED: Final = "DeletionScheduled"
REASON_DELETION_BLOCKED: Final = "DeletionBlocked"
REASON_NOT_OWNED: Final = "NotOwned"
REASON_KEY_CLAIMED: Final = "KeyClaimed"
REASON_INVALID_ANNOTATION: Final = "InvalidAnnotation"
REASON_CLAIMED: Final = "Claimed"
REASON_CLAIM_TAKEN_OVER: Final = "ClaimTakenOver"
REASON_RECOVERED: Final = "Recovered"
REASON_STATUS_CORRECTED: Final = "StatusCorrected"

# Provider configs (accounts/): why no credentials serve a KmsKey.
REASON_PROVIDER_CONFIG_NOT_ALLOWED: Final = "ProviderConfigNotAllowed"
REASON_PROVIDER_CONFIG_NOT_FOUND: Final = "ProviderConfigNotFound"
REASON_PROVIDER_CONFIG_NOT_READY: Final = "ProviderConfigNotReady"
REASON_PROVIDER_CONFIG_CHANGED: Final = "ProviderConfigChanged"
REASON_PROVIDER_CONFIG_ACCOUNT_CHANGED: Final = "ProviderConfigAccountChanged"
REASON_NO_PROVIDER_CONFIG: Final = "NoProviderConfig"
