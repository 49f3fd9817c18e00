"""Batching decisions and admission control: pure functions, table tests, an injected clock."""

from __future__ import annotations

from collections import deque

import pytest

from gateway.admission import Admission, TokenBucket
from gateway.schedule import expired, round_robin, should_launch
from shared.config.gateway import AdmissionSection
from shared.errors import RateLimited


def queues(spec: dict[str, int]) -> dict[str, deque[str]]:
    return {t: deque(f"{t}{i}" for i in range(n)) for t, n in spec.items()}


@pytest.mark.parametrize(
    ("spec", "n", "after", "picked", "last"),
    [
        ({}, 4, None, [], None),  # empty
        ({"a": 1}, 4, None, ["a0"], "a"),  # one
        ({"a": 100, "b": 1, "c": 2}, 4, None, ["a0", "b0", "c0", "a1"], "a"),  # noisy a cannot starve b, c
        ({"a": 100, "b": 1, "c": 2}, 4, "a", ["b0", "c0", "a0", "c1"], "c"),  # resumes after the last tenant
        ({"a": 3}, 2, "z", ["a0", "a1"], "a"),
        ({"a": 2, "b": 2}, 0, None, [], None),
    ],
)
def test_round_robin(
    spec: dict[str, int], n: int, after: str | None, picked: list[str], last: str | None
) -> None:
    q = queues(spec)
    got, new_last = round_robin(q, n, after)
    assert [job for _, job in got] == picked
    assert new_last == last
    assert sum(len(x) for x in q.values()) == sum(spec.values()) - len(picked)


def test_round_robin_is_fair_over_many_rounds() -> None:
    q = queues({"noisy": 1000, "quiet1": 10, "quiet2": 10})
    served: dict[str, int] = {}
    last = None
    for _ in range(10):
        got, last = round_robin(q, 3, last)
        for tenant, _ in got:
            served[tenant] = served.get(tenant, 0) + 1
    assert served == {"noisy": 10, "quiet1": 10, "quiet2": 10}


@pytest.mark.parametrize(
    ("queued", "running", "waited", "launch"),
    [
        (0, 0, 99.0, False),  # nothing to do
        (1, 0, 0.0, False),  # idle engine: wait a little for company
        (1, 0, 0.01, True),  # ... but not longer than max_wait
        (8, 0, 0.0, True),  # a full batch goes at once
        (1, 3, 0.0, True),  # rows running: join at the next step
        (1, 8, 0.0, False),  # batch full
    ],
)
def test_should_launch(queued: int, running: int, waited: float, launch: bool) -> None:
    assert should_launch(queued, running, 8, waited, 0.01) is launch


def test_expired() -> None:
    assert expired([None, 1.0, 5.0, 2.0], now=2.0) == [1, 3]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0, tokens=2.0, stamp=0.0)
    assert bucket.take(0.0) == 0.0 and bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.5) == 0.0


def test_admission_in_flight_cap_bucket_and_queue() -> None:
    clock = Clock()
    adm = Admission(AdmissionSection(max_inflight_per_tenant=2, rate_per_s=1.0, burst=3, queue_cap=3), clock)
    adm.admit("a")
    adm.admit("a")
    with pytest.raises(RateLimited, match="in flight") as info:
        adm.admit("a")
    assert info.value.retry_after_ms > 0
    adm.admit("b")
    with pytest.raises(RateLimited, match="queue is full"):
        adm.admit("c")
    adm.release("a")
    adm.release("a")
    adm.admit("a")  # third token of the burst
    adm.release("a")
    with pytest.raises(RateLimited, match="rate") as info:
        adm.admit("a")
    assert info.value.retry_after_ms == 1000
    clock.now += 1.0
    adm.admit("a")
    assert adm.inflight("a") == 1 and adm.queued == 2
