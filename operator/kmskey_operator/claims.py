"""Claims: which one KmsKey manages a KMS key, written on the key itself as tags, and read back here only.

A claim is data on the key, in the key's own account and region: tags under `kms.alicloud.dev/` naming the
claimant's cluster, namespace, name and UID. Created keys get it from CreateKey itself; an adopted key gets
it (one TagResources) before the operator writes anything else to it. Reconcile, finalize and admission all
ask `is_mine` whether a key is a resource's; `judge` says what an adopter may do with a key claimed by
someone else.

Rules (the README's "Tenancy" section says the same for users):
- `owner-uid` stays the lookup key (ListKeys TagKey/TagValue), so keys created by versions before claims,
  which carry that tag only, are still found and recognised ("legacy" claims, completed on the next write).
- A claim whose cluster is not this operator's is never taken over silently, nor is a claim whose KmsKey
  still exists (or cannot be checked: its namespace is not watched by this operator).
- A stale claim (its KmsKey is gone, or another cluster wrote it) is taken over only when the adopting
  KmsKey carries the annotation `kms.alicloud.dev/take-over-claim: <the old claimant's UID>`: an explicit
  opt-in that names exactly what is taken over.
- Tag values are at most 128 characters of `[A-Za-z0-9/\\_-.+=:@]`. UIDs, cluster IDs (checked by the
  settings) and namespaces (63) fit; a longer KmsKey name is kept as its first 103 characters, `+`, and 24
  hex digits of its SHA-256, so two long names never read alike (`+` cannot occur in a Kubernetes name, so a
  shortened name is recognisable as such). The UID is the identity; the name is for people.
- A claim takes 4 of a key's 20 tags (5 with the `adopted` marker): `user_tag_budget` is what is left, and
  admission refuses more user tags than that, showing the arithmetic.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from typing import Protocol

from kmskey_operator import names

MAX_KEY_TAGS = 20
MAX_TAG_VALUE_CHARS = 128
_HASH_CHARS = 24
_SHORTENED_MARK = "+"

CLAIM_TAG_KEYS = (
    names.OWNER_TAG_KEY,
    names.OWNER_CLUSTER_TAG_KEY,
    names.OWNER_NAMESPACE_TAG_KEY,
    names.OWNER_NAME_TAG_KEY,
)


@dataclasses.dataclass(frozen=True)
class Claimant:
    """A KmsKey as a claim names it. `cluster` "" means unknown (the CLI tools, which judge by UID only)."""

    cluster: str
    namespace: str
    name: str
    uid: str

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim as read from a key's tags. Only `uid` is certain to be there (legacy claims have no more)."""

    uid: str
    cluster: str | None = None
    namespace: str | None = None
    name: str | None = None
    adopted: bool = False

    @property
    def legacy(self) -> bool:
        """Written by a version before claims: the owner UID only."""
        return self.cluster is None and self.namespace is None and self.name is None

    def describe(self) -> str:
        if self.legacy:
            return f"the KmsKey with UID {self.uid} (a claim from before claims named cluster and name)"
        where = f" in cluster {self.cluster}" if self.cluster else ""
        return f"KmsKey {self.namespace or '?'}/{self.name or '?'} (UID {self.uid}){where}"


def tag_value(text: str) -> str:
    """`text` as a tag value: unchanged if it fits, else a prefix, `+` and a hash (never two alike)."""
    if len(text) <= MAX_TAG_VALUE_CHARS:
        return text
    digest = hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]
    keep = MAX_TAG_VALUE_CHARS - len(_SHORTENED_MARK) - _HASH_CHARS
    return f"{text[:keep]}{_SHORTENED_MARK}{digest}"


def claim_tags(claimant: Claimant, *, adopted: bool) -> dict[str, str]:
    """The tags that make up `claimant`'s claim on a key."""
    tags = {
        names.OWNER_TAG_KEY: claimant.uid,
        names.OWNER_CLUSTER_TAG_KEY: tag_value(claimant.cluster),
        names.OWNER_NAMESPACE_TAG_KEY: tag_value(claimant.namespace),
        names.OWNER_NAME_TAG_KEY: tag_value(claimant.name),
    }
    if adopted:
        tags[names.ADOPTED_TAG_KEY] = "true"
    return tags


def operator_tag_count(*, adopted: bool) -> int:
    return len(CLAIM_TAG_KEYS) + (1 if adopted else 0)


def user_tag_budget(*, adopted: bool) -> int:
    """How many tags of its own a user may declare: a key's 20, less the claim's."""
    return MAX_KEY_TAGS - operator_tag_count(adopted=adopted)


def read(tags: Mapping[str, str]) -> Claim | None:
    """The claim on a key with these tags, or None when it carries none."""
    uid = tags.get(names.OWNER_TAG_KEY)
    if not uid:
        return None
    return Claim(
        uid=uid,
        cluster=tags.get(names.OWNER_CLUSTER_TAG_KEY) or None,
        namespace=tags.get(names.OWNER_NAMESPACE_TAG_KEY) or None,
        name=tags.get(names.OWNER_NAME_TAG_KEY) or None,
        adopted=tags.get(names.ADOPTED_TAG_KEY) == "true",
    )


def is_mine(claim: Claim | None, me: Claimant) -> bool:
    """Whether `claim` is `me`'s: the one test reconcile, finalize and admission apply.

    The UID decides; a cluster recorded in the claim must also be this cluster's (a claim written by
    another cluster is never this resource's, whatever its UID says). Legacy claims carry no cluster.
    """
    if claim is None or claim.uid != me.uid:
        return False
    return claim.cluster is None or not me.cluster or claim.cluster == tag_value(me.cluster)


def is_complete(claim: Claim, me: Claimant) -> bool:
    """Whether `me`'s claim carries every claim tag as `claim_tags` would write it now."""
    written = claim_tags(me, adopted=claim.adopted)
    return (claim.cluster, claim.namespace, claim.name) == (
        written[names.OWNER_CLUSTER_TAG_KEY],
        written[names.OWNER_NAMESPACE_TAG_KEY],
        written[names.OWNER_NAME_TAG_KEY],
    )


class Liveness(Protocol):
    """Whether the KmsKey a claim names still exists: True, False, or None when it cannot be told."""

    def claimant_alive(self, claim: Claim) -> bool | None: ...


class Unknown:
    """Liveness for code without a view of the cluster (tools): every claimant might be alive."""

    def claimant_alive(self, claim: Claim) -> bool | None:
        return None


class Standing(enum.StrEnum):
    MINE = "Mine"
    UNCLAIMED = "Unclaimed"
    CLAIMED = "Claimed"  # by a KmsKey that exists, or might (it cannot be checked)
    STALE = "Stale"  # by a KmsKey of this cluster that is gone
    OTHER_CLUSTER = "OtherCluster"  # written by another cluster's operator


@dataclasses.dataclass(frozen=True)
class Judgement:
    """What an adopting KmsKey may do with a key: `may_claim` means write its claim, then manage the key."""

    standing: Standing
    claim: Claim | None
    may_claim: bool
    takes_over: bool = False

    def refusal(self, key_id: str, me: Claimant) -> str:
        """Why `me` may not manage the key, and the way out (empty when it may)."""
        if self.may_claim or self.claim is None:
            return ""
        claimant = self.claim.describe()
        opt_in = f"annotate this KmsKey {names.TAKE_OVER_ANNOTATION}={self.claim.uid}"
        if self.standing is Standing.CLAIMED:
            return (
                f"KMS key {key_id} is claimed by {claimant}; one key has one owner, so this KmsKey will "
                "not write to it. Use your own key, or have that KmsKey deleted (deletionPolicy: Retain "
                "keeps the key) and then take its stale claim over"
            )
        if self.standing is Standing.STALE:
            return (
                f"KMS key {key_id} is claimed by {claimant}, which no longer exists; the claim is never "
                f"taken over silently: to take the key over, {opt_in}"
            )
        return (
            f"KMS key {key_id} is claimed by {claimant}, another cluster than this one "
            f"({me.cluster}); make sure that cluster no longer manages the key, then {opt_in}"
        )


def judge(claim: Claim | None, me: Claimant, *, liveness: Liveness, take_over: str | None) -> Judgement:
    """How `me`, adopting a key, stands towards the claim on it; `take_over` is its take-over annotation."""
    if claim is None:
        return Judgement(Standing.UNCLAIMED, None, may_claim=True)
    if is_mine(claim, me):
        return Judgement(Standing.MINE, claim, may_claim=True)
    opted_in = bool(take_over) and take_over == claim.uid
    if claim.cluster is not None and claim.cluster != tag_value(me.cluster):
        return Judgement(Standing.OTHER_CLUSTER, claim, may_claim=opted_in, takes_over=opted_in)
    if liveness.claimant_alive(claim) is False:
        return Judgement(Standing.STALE, claim, may_claim=opted_in, takes_over=opted_in)
    return Judgement(Standing.CLAIMED, claim, may_claim=False)
