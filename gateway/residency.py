"""Which adapters sit in the bank's slots: an LRU cache with per-slot reference counts and pinning.

The bank has a few slots (slot 0 is the all-zero base); a gateway may register a thousand adapters.
Before a row joins the running batch the batcher (the single owner; one thread, no locks) calls
:meth:`Residency.acquire`, which returns the slot holding that adapter, loading it on a miss. The
row holds a reference until :meth:`Residency.release`; a referenced slot is never overwritten, since
a running row reads it on every decode step.

Eviction takes the least recently used slot that is unreferenced and whose twin is not pinned by the
operator (latency-critical twins stay resident). Evicting writes nothing: the incoming adapter
overwrites the slot in place. If every slot is referenced or pinned, ``acquire`` raises
AdapterSlotsBusy and the batcher keeps the request queued until rows finish.

Keys are (twin, version): a newly committed v2 loads into its own slot while rows still running on v1
keep theirs; v1 then ages out, or :meth:`Residency.evict` drops it as soon as its last row releases.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from shared.adapters import LoadedAdapter
from shared.errors import AdapterSlotsBusy, ModelError


class SlotBank(Protocol):
    """What residency needs of :class:`gateway.engine.bank.AdapterBank` (tests use a recording fake)."""

    @property
    def slots(self) -> int: ...

    def load(self, slot: int, adapter: LoadedAdapter) -> None: ...

    def clear(self, slot: int) -> None: ...


@dataclass(frozen=True, slots=True)
class AdapterKey:
    twin_id: str
    version: int


@dataclass(frozen=True, slots=True)
class ResidencyStats:
    """Counters since start. A swap-in is loader + bank write; its time is what a miss costs a request."""

    hits: int = 0
    misses: int = 0
    swap_ins: int = 0
    evictions: int = 0
    last_swap_ms: float = 0.0
    total_swap_ms: float = 0.0


class Residency:
    """Maps adapter keys to bank slots 1..capacity. Not thread-safe: one owner calls every method."""

    def __init__(
        self,
        bank: SlotBank,
        *,
        capacity: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        busy_retry_ms: int = 50,
    ) -> None:
        usable = bank.slots - 1
        capacity = usable if capacity is None else capacity
        if not 1 <= capacity <= usable:
            raise ModelError(f"residency capacity must be 1..{usable} (bank slots - 1), got {capacity}")
        self._bank = bank
        self._clock = clock
        self._busy_retry_ms = busy_retry_ms
        self._free = list(range(capacity, 0, -1))  # pop() hands out the lowest slot first
        self._lru: OrderedDict[AdapterKey, int] = OrderedDict()  # least recently used first
        self._refs: dict[int, int] = {}  # slot -> rows using it
        self._pinned: set[str] = set()
        self._retiring: set[AdapterKey] = set()  # evict() asked while in use: drop on last release
        self._stats = ResidencyStats()
        self.capacity = capacity

    @property
    def stats(self) -> ResidencyStats:
        return self._stats

    def acquire(self, key: AdapterKey, loader: Callable[[], LoadedAdapter]) -> int:
        """The slot holding ``key``'s adapter, loaded on a miss; the caller must :meth:`release` it.

        Raises AdapterSlotsBusy (an AdapterUnavailable) if every slot is in use or pinned, and whatever
        ``loader`` raises (AdapterError) with only the miss counted: a failed read never costs another
        adapter its slot.
        """
        slot = self._lru.get(key)
        if slot is not None:
            self._lru.move_to_end(key)
            self._retiring.discard(key)
            self._refs[slot] += 1
            self._stats = replace(self._stats, hits=self._stats.hits + 1)
            return slot
        self._stats = replace(self._stats, misses=self._stats.misses + 1)
        victim = None if self._free else self._victim()
        start = self._clock()
        adapter = loader()
        slot = self._free.pop() if victim is None else self._lru.pop(victim)
        if victim is not None:
            self._stats = replace(self._stats, evictions=self._stats.evictions + 1)
        try:
            self._bank.load(slot, adapter)
        except BaseException:
            self._bank.clear(slot)  # may be half written; never leave a stale adapter behind
            self._refs.pop(slot, None)
            self._free.append(slot)
            raise
        swap_ms = (self._clock() - start) * 1000.0
        self._lru[key] = slot
        self._refs[slot] = 1
        self._stats = replace(
            self._stats,
            swap_ins=self._stats.swap_ins + 1,
            last_swap_ms=swap_ms,
            total_swap_ms=self._stats.total_swap_ms + swap_ms,
        )
        return slot

    def release(self, slot: int) -> None:
        """One row using ``slot`` finished. Releasing a slot nobody holds is a bug in the caller."""
        refs = self._refs.get(slot, 0)
        if refs < 1:
            raise ModelError(f"release of adapter slot {slot}, which no row holds")
        self._refs[slot] = refs - 1
        key = self._key_of(slot)
        if refs == 1 and key in self._retiring:
            self._drop(key)

    def pin(self, twin_id: str) -> None:
        """Never evict adapters of ``twin_id`` (operator config for latency-critical twins)."""
        self._pinned.add(twin_id)

    def unpin(self, twin_id: str) -> None:
        self._pinned.discard(twin_id)

    def evict(self, key: AdapterKey) -> bool:
        """Drop ``key`` now (True) or, while rows still use it, when the last one releases (False).
        Used after a rollback or a new version so a stale version does not hold a slot, pinned or not.
        A key that is not resident is already gone (True)."""
        slot = self._lru.get(key)
        if slot is None:
            return True
        if self._refs[slot] > 0:
            self._retiring.add(key)
            return False
        self._drop(key)
        return True

    def resident(self) -> dict[AdapterKey, int]:
        """Resident keys and their slots, least recently used first."""
        return dict(self._lru)

    def in_use(self, slot: int) -> int:
        """How many rows hold ``slot`` (0 for a free or idle slot)."""
        return self._refs.get(slot, 0)

    def _victim(self) -> AdapterKey:
        for key, slot in self._lru.items():
            if self._refs[slot] == 0 and key.twin_id not in self._pinned:
                return key
        raise AdapterSlotsBusy("all adapter slots busy", retry_after_ms=self._busy_retry_ms)

    def _drop(self, key: AdapterKey) -> None:
        slot = self._lru.pop(key)
        self._retiring.discard(key)
        del self._refs[slot]
        self._bank.clear(slot)
        self._free.append(slot)
        self._stats = replace(self._stats, evictions=self._stats.evictions + 1)

    def _key_of(self, slot: int) -> AdapterKey:
        return next(key for key, held in self._lru.items() if held == slot)
