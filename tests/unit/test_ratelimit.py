"""The KMS rate limiter: tokens go to the reconcile that began first, and to edits before drift checks."""

from __future__ import annotations

import asyncio

from kmskey_operator.kms import ratelimit
from kmskey_operator.kms.ratelimit import CallClass, Priority, RateLimiter, TokenBucket

RATE = 100.0  # one token every 10 ms: fast tests, and an order that does not depend on timing


async def reconcile(
    limiter: RateLimiter, name: str, calls: int, done: list[str], priority: Priority = Priority.FOREGROUND
) -> None:
    """A reconcile making `calls` reads one after another (as observe does), logging each let through."""
    with ratelimit.scope(priority):
        for i in range(calls):
            await limiter.acquire("cn-hangzhou", "DescribeKey")
            done.append(f"{name}{i}")


async def test_the_calls_of_the_reconcile_that_began_first_go_first() -> None:
    limiter = RateLimiter(0, RATE, 0)
    done: list[str] = []
    # Their scopes begin in this order: a, b, c.
    await asyncio.gather(*(reconcile(limiter, name, 3, done) for name in "abc"))
    # FIFO per call would interleave them (a0 b0 c0 a1 b1 c1 ...): every edit would finish near the end.
    assert done == ["a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2"]


async def test_drift_checks_wait_while_creates_and_edits_wait() -> None:
    limiter = RateLimiter(0, RATE, 0)
    await limiter.acquire("cn-hangzhou", "DescribeKey")  # spend the saved-up token: everyone queues
    done: list[str] = []
    # The drift checks begin and queue first, the edit after them.
    checks = [reconcile(limiter, f"resync{i}-", 2, done, Priority.BACKGROUND) for i in range(3)]
    await asyncio.gather(*checks, reconcile(limiter, "edit-", 2, done))
    assert done[:2] == ["edit-0", "edit-1"], done
    assert sorted(done[2:]) == sorted(f"resync{i}-{j}" for i in range(3) for j in range(2))


async def test_calls_outside_a_reconcile_are_served_in_arrival_order() -> None:
    bucket = TokenBucket(RATE)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(5)))
    assert order == [0, 1, 2, 3, 4]


async def test_the_rate_is_kept() -> None:
    bucket = TokenBucket(RATE)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.gather(*(bucket.acquire() for _ in range(21)))
    # The first token is there at once; the other 20 accrue at 100/s.
    assert loop.time() - began >= 20 / RATE * 0.95


async def test_a_cancelled_waiter_neither_blocks_the_queue_nor_spends_a_token() -> None:
    bucket = TokenBucket(RATE)
    await bucket.acquire()  # the saved-up token is gone: the next callers wait
    gone = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    stays = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)
    assert bucket.waiting == 2
    gone.cancel()
    waited = await asyncio.wait_for(stays, timeout=1)
    assert waited < 2 / RATE + 0.05
    assert bucket.waiting == 0


async def test_an_unlimited_bucket_never_waits() -> None:
    limiter = RateLimiter(0, 0, 0)
    assert await asyncio.wait_for(limiter.acquire("r", "CreateKey"), 1) == 0.0
    assert limiter.waiting == 0


async def test_a_scope_counts_its_calls_by_quota_class() -> None:
    limiter = RateLimiter(0, 0, 0)
    with ratelimit.scope(Priority.BACKGROUND) as calls:
        for action in ("DescribeKey", "ListTagResources", "UpdateKeyDescription", "CreateKey"):
            await limiter.acquire("r", action)
    assert calls.calls == {CallClass.READ: 2, CallClass.WRITE: 1, CallClass.CREATE: 1}
    assert ratelimit.current_scope() is None
