"""claims.py: the claim as tags, read back, and the one answer to "is this key this resource's?"."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmskey_operator import claims, names

ME = claims.Claimant("cluster-a", "team-a", "orders", "3f1e2d4c-0000-4000-8000-000000000001")
TAG_VALUE = re.compile(r"^[A-Za-z0-9/\\_\-.+=:@]{0,128}$")
# A Kubernetes object name: a DNS subdomain, at most 253 characters.
k8s_names = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", fullmatch=True)


class Alive:
    def __init__(self, answer: bool | None) -> None:
        self.answer = answer

    def claimant_alive(self, claim: claims.Claim) -> bool | None:
        return self.answer


def test_a_claim_names_cluster_namespace_name_and_uid_and_reads_back_as_mine() -> None:
    tags = claims.claim_tags(ME, adopted=False)
    assert tags == {
        names.OWNER_TAG_KEY: ME.uid,
        names.OWNER_CLUSTER_TAG_KEY: "cluster-a",
        names.OWNER_NAMESPACE_TAG_KEY: "team-a",
        names.OWNER_NAME_TAG_KEY: "orders",
    }
    claim = claims.read({**tags, "team": "x"})
    assert claim == claims.Claim(ME.uid, "cluster-a", "team-a", "orders", adopted=False)
    assert claims.is_mine(claim, ME)
    assert claims.is_complete(claim, ME)


def test_an_adopted_claim_carries_the_adopted_marker_and_takes_one_more_tag() -> None:
    tags = claims.claim_tags(ME, adopted=True)
    assert tags[names.ADOPTED_TAG_KEY] == "true"
    assert claims.read(tags).adopted  # type: ignore[union-attr]
    assert claims.user_tag_budget(adopted=True) == 15
    assert claims.user_tag_budget(adopted=False) == 16


def test_a_key_without_the_owner_uid_tag_carries_no_claim() -> None:
    assert claims.read({}) is None
    assert claims.read({names.OWNER_NAME_TAG_KEY: "orders", "team": "a"}) is None
    assert not claims.is_mine(None, ME)


def test_a_claim_written_before_claims_existed_is_still_recognised_but_incomplete() -> None:
    legacy = claims.read({names.OWNER_TAG_KEY: ME.uid})
    assert legacy is not None
    assert legacy.legacy
    assert claims.is_mine(legacy, ME)
    assert not claims.is_complete(legacy, ME)
    assert "before claims" in legacy.describe()


def test_the_same_uid_written_by_another_cluster_is_never_mine() -> None:
    elsewhere = claims.read(
        claims.claim_tags(claims.Claimant("cluster-b", "team-a", "orders", ME.uid), adopted=False)
    )
    assert not claims.is_mine(elsewhere, ME)


def test_another_uid_is_never_mine_whatever_the_name_says() -> None:
    twin = claims.read(
        claims.claim_tags(claims.Claimant("cluster-a", "team-a", "orders", "other-uid"), adopted=False)
    )
    assert not claims.is_mine(twin, ME)


def test_tools_that_do_not_know_the_cluster_judge_by_uid() -> None:
    tool = claims.Claimant("", "team-a", "orders", ME.uid)
    assert claims.is_mine(claims.read(claims.claim_tags(ME, adopted=False)), tool)


@given(name=k8s_names)
def test_every_kubernetes_name_becomes_a_valid_tag_value(name: str) -> None:
    value = claims.tag_value(name)
    assert TAG_VALUE.match(value)
    assert value == name or ("+" in value and len(value) == 128)


@given(first=k8s_names, second=k8s_names)
def test_two_different_names_never_become_the_same_tag_value(first: str, second: str) -> None:
    if first != second:
        assert claims.tag_value(first) != claims.tag_value(second)


def test_a_long_name_is_shortened_recognisably_and_the_claim_is_still_mine() -> None:
    long = claims.Claimant("cluster-a", "team-a", "a" * 200, ME.uid)
    shared_prefix = claims.Claimant("cluster-a", "team-a", "a" * 199 + "b", ME.uid)
    tags = claims.claim_tags(long, adopted=False)
    assert len(tags[names.OWNER_NAME_TAG_KEY]) == 128
    assert (
        tags[names.OWNER_NAME_TAG_KEY]
        != claims.claim_tags(shared_prefix, adopted=False)[names.OWNER_NAME_TAG_KEY]
    )
    assert claims.is_complete(claims.read(tags), long)  # type: ignore[arg-type]


# --- judge: what an adopting KmsKey may do ------------------------------------------------------------------


def other(cluster: str = "cluster-a", uid: str = "uid-victim") -> claims.Claim:
    found = claims.read(claims.claim_tags(claims.Claimant(cluster, "team-b", "victim", uid), adopted=False))
    assert found is not None
    return found


def test_an_unclaimed_key_may_be_claimed() -> None:
    verdict = claims.judge(None, ME, liveness=Alive(None), take_over=None)
    assert (verdict.standing, verdict.may_claim) == (claims.Standing.UNCLAIMED, True)


def test_a_key_claimed_by_a_live_kmskey_is_refused_even_with_the_take_over_annotation() -> None:
    verdict = claims.judge(other(), ME, liveness=Alive(True), take_over="uid-victim")
    assert (verdict.standing, verdict.may_claim) == (claims.Standing.CLAIMED, False)
    message = verdict.refusal("key-1", ME)
    assert "KmsKey team-b/victim (UID uid-victim)" in message
    assert "will not write to it" in message


def test_a_claimant_that_cannot_be_checked_counts_as_alive() -> None:
    verdict = claims.judge(other(), ME, liveness=Alive(None), take_over="uid-victim")
    assert verdict.standing is claims.Standing.CLAIMED
    assert not verdict.may_claim


def test_a_stale_claim_is_taken_over_only_with_the_annotation_naming_its_uid() -> None:
    assert not claims.judge(other(), ME, liveness=Alive(False), take_over=None).may_claim
    assert not claims.judge(other(), ME, liveness=Alive(False), take_over="someone-else").may_claim
    verdict = claims.judge(other(), ME, liveness=Alive(False), take_over="uid-victim")
    assert (verdict.standing, verdict.may_claim, verdict.takes_over) == (claims.Standing.STALE, True, True)
    refusal = claims.judge(other(), ME, liveness=Alive(False), take_over=None).refusal("key-1", ME)
    assert f"{names.TAKE_OVER_ANNOTATION}=uid-victim" in refusal


@pytest.mark.parametrize("alive", [True, False, None])
def test_a_claim_from_another_cluster_is_never_taken_over_silently(alive: bool | None) -> None:
    silent = claims.judge(other(cluster="cluster-b"), ME, liveness=Alive(alive), take_over=None)
    assert (silent.standing, silent.may_claim) == (claims.Standing.OTHER_CLUSTER, False)
    assert "another cluster" in silent.refusal("key-1", ME)
    opted = claims.judge(other(cluster="cluster-b"), ME, liveness=Alive(alive), take_over="uid-victim")
    assert opted.may_claim
    assert opted.takes_over


def test_my_own_claim_is_mine() -> None:
    verdict = claims.judge(
        claims.read(claims.claim_tags(ME, adopted=True)), ME, liveness=Alive(None), take_over=None
    )
    assert (verdict.standing, verdict.may_claim) == (claims.Standing.MINE, True)
