"""The peering identity never needs a passwd entry (issue #16: the image's uid 65532 has none)."""

from __future__ import annotations

import datetime
import getpass
import pwd

import pytest

from kmskey_operator.identity import peer_identity, user_name


def _uid_without_passwd_entry() -> int:
    for uid in (65532, 54321, 43210, 32109):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("every candidate uid has a passwd entry on this machine")


def test_getpass_itself_raises_for_a_uid_without_passwd_entry() -> None:
    """The failure the identity works around, so this file notices if Python ever changes it."""
    uid = _uid_without_passwd_entry()
    with pytest.raises(KeyError, match="uid not found"):
        pwd.getpwuid(uid)
    assert callable(getpass.getuser)


def test_a_uid_without_passwd_entry_gets_an_identity_naming_the_uid() -> None:
    uid = _uid_without_passwd_entry()
    now = datetime.datetime(2026, 12, 1, 20, 30, 5, tzinfo=datetime.UTC)
    identity = peer_identity({}, uid=uid, now=now)
    user, rest = identity.split("@", 1)
    host, stamp, suffix = rest.split("/")
    assert user == f"uid{uid}"
    assert host
    assert stamp == "20261201203005"
    assert len(suffix) == 4


def test_pod_id_wins_and_the_environment_names_the_user_before_passwd() -> None:
    assert (
        peer_identity({"POD_ID": "kms-kmskey-operator-6d9f-abcde"}, uid=0) == "kms-kmskey-operator-6d9f-abcde"
    )
    assert peer_identity({"USER": "alice"}, uid=_uid_without_passwd_entry()).startswith("alice@")
    assert user_name({}, 0) == pwd.getpwuid(0).pw_name


def test_two_replicas_started_in_the_same_second_get_different_identities() -> None:
    now = datetime.datetime(2026, 12, 1, tzinfo=datetime.UTC)
    identities = {peer_identity({}, uid=_uid_without_passwd_entry(), now=now) for _ in range(20)}
    assert len(identities) > 1
