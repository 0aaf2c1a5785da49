"""kms/sts.RoleCredentialsCache: role credentials kept until a quarter of their lifetime is left."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from alibabacloud_credentials.provider.refreshable import Credentials

from kmskey_operator.kms.sts import RoleCredentialsCache


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class CountingRole:
    """Stands in for the library's role provider: new credentials valid `lifetime` s per fetch."""

    def __init__(self, clock: Clock, lifetime: int, *, delay: float = 0.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.delay = delay
        self.fetches = 0
        self.fail = False
        self._lock = threading.Lock()

    def get_credentials(self) -> Credentials:
        time.sleep(self.delay)
        with self._lock:
            self.fetches += 1
            if self.fail:
                raise RuntimeError("STS is away")
            return Credentials(
                access_key_id=f"STS.{self.fetches}",
                access_key_secret="s",
                security_token="t",
                expiration=int(self.clock.now) + self.lifetime,
                provider_name="ram_role_arn",
            )

    def get_provider_name(self) -> str:
        return "ram_role_arn"


@pytest.mark.parametrize(("lifetime", "kept"), [(900, 675), (3600, 2700), (43200, 42300)])
def test_credentials_are_kept_until_a_quarter_of_their_lifetime_is_left_at_most_15_minutes(
    lifetime: int, kept: int
) -> None:
    clock = Clock()
    role = CountingRole(clock, lifetime)
    cache = RoleCredentialsCache(role, clock=clock)
    first = cache.get_credentials()
    clock.now += kept - 1
    assert cache.get_credentials() is first
    assert role.fetches == 1
    clock.now += 1
    assert cache.get_credentials().get_access_key_id() == "STS.2"
    assert role.fetches == 2


def test_threads_asking_at_once_share_one_fetch() -> None:
    clock = Clock()
    role = CountingRole(clock, 900, delay=0.2)
    cache = RoleCredentialsCache(role, clock=clock)
    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(lambda _: cache.get_credentials().get_access_key_id(), range(8)))
    assert ids == {"STS.1"}
    assert role.fetches == 1


def test_a_failed_fetch_is_not_kept_and_forget_fetches_afresh() -> None:
    clock = Clock()
    role = CountingRole(clock, 900)
    cache = RoleCredentialsCache(role, clock=clock)
    role.fail = True
    with pytest.raises(RuntimeError):
        cache.get_credentials()
    role.fail = False
    assert cache.get_credentials().get_access_key_id() == "STS.2"
    cache.forget()
    assert cache.get_credentials().get_access_key_id() == "STS.3"
    assert cache.get_provider_name() == "ram_role_arn"
