"""Batching decisions as pure functions (tested with tables): who joins the batch next.

Fairness is round-robin across tenants: each pick takes one request from the next tenant in turn,
starting after the tenant served last, so a tenant with 1,000 queued requests gets one row per
round like a tenant with one. Within a tenant, requests keep their arrival order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import TypeVar

J = TypeVar("J")


def round_robin(
    queues: Mapping[str, deque[J]], n: int, after: str | None
) -> tuple[list[tuple[str, J]], str | None]:
    """Pop up to ``n`` jobs fairly; returns them with the tenant served last (for the next call).

    ``queues`` is mutated (popped from the left); empty queues are left in place for the caller.
    """
    tenants = sorted(t for t, q in queues.items() if q)
    if not tenants or n <= 0:
        return [], after
    start = 0
    if after is not None:
        start = next((i for i, t in enumerate(tenants) if t > after), 0)
    order = tenants[start:] + tenants[:start]
    picked: list[tuple[str, J]] = []
    last = after
    while len(picked) < n and order:
        still: list[str] = []
        for tenant in order:
            if len(picked) >= n:
                break
            picked.append((tenant, queues[tenant].popleft()))
            last = tenant
            if queues[tenant]:
                still.append(tenant)
        else:
            order = still
            continue
        break
    return picked, last


def should_launch(queued: int, running: int, max_batch: int, waited_s: float, max_wait_s: float) -> bool:
    """Start a new batch now, or wait a little for more requests to join it?

    While rows are running, new requests join at the next step (continuous batching), so waiting only
    applies to an idle engine: launch once the batch would be full or the oldest request has waited
    ``max_wait_s``.
    """
    if queued == 0:
        return False
    if running > 0:
        return running < max_batch
    return queued >= max_batch or waited_s >= max_wait_s


def expired(deadlines: Sequence[float | None], now: float) -> list[int]:
    """Indices whose deadline has passed."""
    return [i for i, d in enumerate(deadlines) if d is not None and d <= now]
