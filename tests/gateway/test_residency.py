"""Adapter residency: every transition of the slot LRU, walked as tables against a recording bank.

A step is ``(op, arg, expected)``: ``("acquire", "a1", 1)`` acquires twin ``a`` version 1 and
expects slot 1 (or an exception class); ``("release", 1, None)``, ``("evict", "a1", True)``,
``("pin", "a", None)``, ``("unpin", "a", None)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from specs import tiny_spec

from gateway.engine.bank import AdapterBank
from gateway.residency import AdapterKey, Residency, ResidencyStats
from shared import errors
from shared.adapters import AdapterManifest, LoadedAdapter
from shared.modelspec import ModelSpec, lora_a_name, lora_b_name

FINGERPRINT = "f" * 64
Step = tuple[str, Any, Any]


class FakeBank:
    """Records what residency writes; refuses what the real bank refuses (slot 0, out of range)."""

    def __init__(self, slots: int = 4) -> None:
        self.slots = slots
        self.calls: list[tuple[Any, ...]] = []
        self.held: dict[int, tuple[str, int]] = {}
        self.fail_next: Exception | None = None  # the next load raises this

    def load(self, slot: int, adapter: LoadedAdapter) -> None:
        assert 0 < slot < self.slots, slot
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        man = adapter.manifest
        self.calls.append(("load", slot, f"{man.twin_id}{man.version}"))
        self.held[slot] = (man.twin_id, man.version)

    def clear(self, slot: int) -> None:
        assert 0 < slot < self.slots, slot
        self.calls.append(("clear", slot))
        self.held.pop(slot, None)


def key(name: str) -> AdapterKey:
    """"a1" -> twin a, version 1."""
    return AdapterKey(name[:-1], int(name[-1]))


def adapter(k: AdapterKey) -> LoadedAdapter:
    manifest = AdapterManifest(twin_id=k.twin_id, version=k.version, base_fingerprint=FINGERPRINT, rank=1,
                               alpha=1.0, target_modules=("q_proj",))
    return LoadedAdapter(manifest, {})


def walk(steps: list[Step], *, slots: int = 4, capacity: int | None = None) -> tuple[Residency, FakeBank]:
    bank = FakeBank(slots)
    res = Residency(bank, capacity=capacity)
    for i, (op, arg, want) in enumerate(steps):
        def call(op: str = op, arg: Any = arg) -> Any:
            if op == "acquire":
                return res.acquire(key(arg), lambda: adapter(key(arg)))
            if op == "evict":
                return res.evict(key(arg))
            if op == "release":
                return res.release(arg)
            return res.pin(arg) if op == "pin" else res.unpin(arg)

        if isinstance(want, type) and issubclass(want, Exception):
            with pytest.raises(want):
                call()
        else:
            assert call() == want, f"step {i}: {op} {arg}"
    return res, bank


def loaded(bank: FakeBank) -> list[tuple[int, str]]:
    return [(c[1], c[2]) for c in bank.calls if c[0] == "load"]


FILL = [("acquire", "a1", 1), ("acquire", "b1", 2), ("acquire", "c1", 3)]
FILL_IDLE = [*FILL, ("release", 1, None), ("release", 2, None), ("release", 3, None)]

# (steps, resident afterwards {key: slot} in LRU order, loads in order, capacity)
SCENARIOS: dict[str, tuple[list[Step], dict[str, int], list[tuple[int, str]], int | None]] = {
    "miss into free slots, lowest first": (
        FILL, {"a1": 1, "b1": 2, "c1": 3}, [(1, "a1"), (2, "b1"), (3, "c1")], None),
    "hit returns the same slot without loading": (
        [("acquire", "a1", 1), ("acquire", "a1", 1), ("release", 1, None), ("release", 1, None)],
        {"a1": 1}, [(1, "a1")], None),
    "a full bank evicts the least recently used": (
        [*FILL_IDLE, ("acquire", "d1", 1)], {"b1": 2, "c1": 3, "d1": 1},
        [(1, "a1"), (2, "b1"), (3, "c1"), (1, "d1")], None),
    "a hit touches: the next victim changes": (
        [*FILL_IDLE, ("acquire", "a1", 1), ("release", 1, None), ("acquire", "d1", 2)],
        {"c1": 3, "a1": 1, "d1": 2}, [(1, "a1"), (2, "b1"), (3, "c1"), (2, "d1")], None),
    "a slot in use is never the victim": (
        [*FILL, ("release", 2, None), ("release", 3, None), ("acquire", "d1", 2)],
        {"a1": 1, "c1": 3, "d1": 2}, [(1, "a1"), (2, "b1"), (3, "c1"), (2, "d1")], None),
    "a pinned twin is never the victim, until unpinned": (
        [("pin", "a", None), *FILL_IDLE, ("acquire", "d1", 2), ("release", 2, None),
         ("unpin", "a", None), ("acquire", "e1", 1)],
        {"c1": 3, "d1": 2, "e1": 1}, [(1, "a1"), (2, "b1"), (3, "c1"), (2, "d1"), (1, "e1")], None),
    "all slots busy: unavailable, then served once a row releases": (
        [*FILL, ("acquire", "d1", errors.AdapterUnavailable), ("release", 2, None), ("acquire", "d1", 2)],
        {"a1": 1, "c1": 3, "d1": 2}, [(1, "a1"), (2, "b1"), (3, "c1"), (2, "d1")], None),
    "busy or pinned everywhere is unavailable too": (
        [("pin", "b", None), ("acquire", "a1", 1), ("acquire", "b1", 2), ("release", 2, None),
         ("acquire", "c1", 3), ("acquire", "d1", errors.AdapterUnavailable)],
        {"a1": 1, "b1": 2, "c1": 3}, [(1, "a1"), (2, "b1"), (3, "c1")], None),
    "a new version loads beside the old one still in use": (
        [("acquire", "a1", 1), ("acquire", "a2", 2), ("acquire", "b1", 3), ("release", 2, None),
         ("release", 3, None), ("acquire", "c1", 2), ("release", 1, None), ("acquire", "d1", 1)],
        {"b1": 3, "c1": 2, "d1": 1}, [(1, "a1"), (2, "a2"), (3, "b1"), (2, "c1"), (1, "d1")], None),
    "capacity below the bank's slots leaves the rest alone": (
        [("acquire", "a1", 1), ("acquire", "b1", 2), ("release", 1, None), ("acquire", "c1", 1),
         ("acquire", "d1", errors.AdapterUnavailable)],
        {"b1": 2, "c1": 1}, [(1, "a1"), (2, "b1"), (1, "c1")], 2),
    "evict an idle key: its slot is cleared and reused first": (
        [*FILL_IDLE, ("evict", "b1", True), ("evict", "b1", True), ("acquire", "d1", 2)],
        {"a1": 1, "c1": 3, "d1": 2}, [(1, "a1"), (2, "b1"), (3, "c1"), (2, "d1")], None),
    "evict a key in use: dropped when its last row releases": (
        [("acquire", "a1", 1), ("acquire", "a1", 1), ("evict", "a1", False), ("release", 1, None),
         ("release", 1, None), ("acquire", "b1", 1)],
        {"b1": 1}, [(1, "a1"), (1, "b1")], None),
    "a hit cancels a pending evict": (
        [("acquire", "a1", 1), ("evict", "a1", False), ("acquire", "a1", 1), ("release", 1, None),
         ("release", 1, None)],
        {"a1": 1}, [(1, "a1")], None),
    "a pinned twin's stale version can still be evicted": (
        [("pin", "a", None), ("acquire", "a1", 1), ("release", 1, None), ("evict", "a1", True)],
        {}, [(1, "a1")], None),
    "release errors: never acquired, once too often, the base slot": (
        [("release", 1, errors.ModelError), ("acquire", "a1", 1), ("release", 1, None),
         ("release", 1, errors.ModelError), ("release", 0, errors.ModelError)],
        {"a1": 1}, [(1, "a1")], None),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_transitions(name: str) -> None:
    steps, resident, loads, capacity = SCENARIOS[name]
    res, bank = walk(steps, capacity=capacity)
    assert res.resident() == {key(k): slot for k, slot in resident.items()}
    assert list(res.resident()) == [key(k) for k in resident]  # LRU order, oldest first
    assert loaded(bank) == loads
    assert bank.held == {slot: (key(k).twin_id, key(k).version) for k, slot in resident.items()}


def test_in_use_counts_the_rows_holding_a_slot() -> None:
    res, _ = walk([("acquire", "a1", 1), ("acquire", "a1", 1), ("acquire", "b1", 2), ("release", 2, None)])
    assert [res.in_use(slot) for slot in (1, 2, 3)] == [2, 0, 0]


def test_evicting_clears_the_bank_slot() -> None:
    _, bank = walk([*FILL_IDLE, ("evict", "b1", True)])
    assert bank.calls[-1] == ("clear", 2)


def test_a_failing_loader_changes_nothing() -> None:
    res, bank = walk(FILL_IDLE)
    before = (res.resident(), list(bank.calls))

    def broken() -> LoadedAdapter:
        raise errors.AdapterHashMismatch("stored file damaged")

    with pytest.raises(errors.AdapterHashMismatch):
        res.acquire(key("d1"), broken)
    assert (res.resident(), bank.calls) == before  # the would-be victim a1 is still resident
    assert res.acquire(key("a1"), broken) == 1  # and still a hit


def test_a_failing_bank_write_frees_and_clears_the_slot() -> None:
    bank = FakeBank()
    res = Residency(bank)
    bank.fail_next = errors.AdapterShapeError("does not fit")
    with pytest.raises(errors.AdapterShapeError):
        res.acquire(key("a1"), lambda: adapter(key("a1")))
    assert res.resident() == {} and bank.calls == [("clear", 1)]
    assert res.acquire(key("b1"), lambda: adapter(key("b1"))) == 1


def test_stats_count_hits_misses_and_swap_time() -> None:
    now = [0.0]

    def slow_loader(k: AdapterKey) -> Callable[[], LoadedAdapter]:
        def load() -> LoadedAdapter:
            now[0] += 0.25  # reading and verifying the file takes 250 ms
            return adapter(k)
        return load

    res = Residency(FakeBank(slots=2), clock=lambda: now[0])
    assert res.stats == ResidencyStats()
    res.release(res.acquire(key("a1"), slow_loader(key("a1"))))
    res.release(res.acquire(key("a1"), slow_loader(key("a1"))))
    res.release(res.acquire(key("b1"), slow_loader(key("b1"))))
    assert res.stats == ResidencyStats(hits=1, misses=2, swap_ins=2, evictions=1, last_swap_ms=250.0,
                                       total_swap_ms=500.0)


@pytest.mark.parametrize(("slots", "capacity"), [(1, None), (4, 0), (4, 4)])
def test_capacity_must_fit_the_bank(slots: int, capacity: int | None) -> None:
    with pytest.raises(errors.ModelError):
        Residency(FakeBank(slots), capacity=capacity)


def test_unavailable_carries_a_retry_hint() -> None:
    res = Residency(FakeBank(slots=2), busy_retry_ms=75)
    res.acquire(key("a1"), lambda: adapter(key("a1")))
    with pytest.raises(errors.AdapterUnavailable) as info:
        res.acquire(key("b1"), lambda: adapter(key("b1")))
    assert (info.value.status, info.value.retry_after_ms) == (503, 75)


# ------------------------------------------------------------------------------------------------
# once against the real bank: the numbers land in the slot the batcher is told about




def real_adapter(spec: ModelSpec, k: AdapterKey, seed: int) -> LoadedAdapter:
    rng = np.random.default_rng(seed)
    tensors: dict[str, Any] = {}
    for _layer, module, a_name, b_name in spec.bank_names():
        d_in, d_out = spec.target_shape(module)
        tensors[a_name] = rng.standard_normal((d_in, 2), dtype=np.float32)
        tensors[b_name] = rng.standard_normal((2, d_out), dtype=np.float32)
    manifest = AdapterManifest(twin_id=k.twin_id, version=k.version, base_fingerprint=spec.fingerprint,
                               rank=2, alpha=4.0, target_modules=spec.target_modules)
    return LoadedAdapter(manifest, tensors)


def test_with_the_real_bank() -> None:
    bank = AdapterBank(tiny_spec(), slots=3)
    spec = bank.spec
    res = Residency(bank)
    a, b, c = (real_adapter(spec, key(n), seed) for seed, n in enumerate(("a1", "b1", "c1")))
    slot_a = res.acquire(key("a1"), lambda: a)
    slot_b = res.acquire(key("b1"), lambda: b)
    res.release(slot_a)
    slot_c = res.acquire(key("c1"), lambda: c)  # evicts a1
    assert (slot_a, slot_b, slot_c) == (1, 2, 1)
    assert bank.occupant(1) == ("c", 1) and bank.occupant(2) == ("b", 1)
    a_rows, b_rows = c.bank_rows(1, "v_proj", bank.rank)  # the bank pads to the largest rank it holds
    np.testing.assert_array_equal(bank.arrays[lora_a_name(1, "v_proj")][1], a_rows)
    np.testing.assert_array_equal(bank.arrays[lora_b_name(1, "v_proj")][1], b_rows)
    assert not bank.arrays[lora_a_name(0, "q_proj")][0].any()  # the base slot stays zero
    res.release(slot_b)
    assert res.evict(key("b1"))
    assert bank.occupant(2) is None and not bank.arrays[lora_b_name(0, "q_proj")][2].any()
