"""Peering settings that make two replicas work: distinct priorities (the oldest highest), a short lifetime.

kopf pauses every operator that sees a live peer with the same priority, so replicas left at kopf's default
priority (0) all pause and nothing reconciles; test_two_replicas.py shows the whole behaviour end to end.
"""

from __future__ import annotations

import time

import kopf
import pytest

from kmskey_operator.handlers import configure_kopf
from kmskey_operator.settings import Settings, SettingsError

pytestmark = pytest.mark.chaos


def test_replicas_started_one_after_the_other_get_distinct_priorities_the_older_one_higher() -> None:
    settings = Settings(peering_name="kmskey-operator")
    older, newer = kopf.OperatorSettings(), kopf.OperatorSettings()
    configure_kopf(older, settings)
    time.sleep(0.002)  # two pods never start in the same millisecond in this test
    configure_kopf(newer, settings)

    assert older.peering.priority > newer.peering.priority


def test_an_explicit_priority_and_lifetime_are_used_as_given() -> None:
    kopf_settings = kopf.OperatorSettings()
    env = {"KMSKEY_PEERING": "p", "KMSKEY_PEERING_PRIORITY": "100", "KMSKEY_PEERING_LIFETIME_SECONDS": "15"}
    configure_kopf(kopf_settings, Settings.from_env(env))

    assert (kopf_settings.peering.priority, kopf_settings.peering.lifetime) == (100, 15)


def test_standalone_operators_keep_kopfs_peering_defaults() -> None:
    kopf_settings = kopf.OperatorSettings()
    configure_kopf(kopf_settings, Settings())

    assert (kopf_settings.peering.priority, kopf_settings.peering.lifetime) == (0, 60)


def test_a_lifetime_below_one_second_is_refused() -> None:
    with pytest.raises(SettingsError, match="KMSKEY_PEERING_LIFETIME_SECONDS"):
        Settings.from_env({"KMSKEY_PEERING_LIFETIME_SECONDS": "0"})
