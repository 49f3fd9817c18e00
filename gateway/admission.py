"""Admission control: per-tenant token buckets and in-flight caps, and a global queue cap.

Pure and clock-injected: the service asks ``admit`` before queueing a request and calls
``release`` when it finishes. A refusal carries ``retry_after_ms`` for the 429 reply.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from shared.config.gateway import AdmissionSection
from shared.errors import RateLimited


@dataclass(slots=True)
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """Take one token; 0.0 if granted, else the seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Admission:
    def __init__(
        self, cfg: AdmissionSection, clock: Callable[[], float], *, est_service_s: float = 0.5
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._inflight: dict[str, int] = {}
        self._queued_total = 0
        self.est_service_s = est_service_s  # updated by the service from measured latencies

    def admit(self, tenant: str) -> None:
        """Reserve a slot for one request of ``tenant`` or raise RateLimited (429)."""
        inflight = self._inflight.get(tenant, 0)
        if inflight >= self._cfg.max_inflight_per_tenant:
            raise RateLimited(
                "too many requests in flight for this tenant", retry_after_ms=self._ms(self.est_service_s)
            )
        if self._queued_total >= self._cfg.queue_cap:
            raise RateLimited("gateway queue is full", retry_after_ms=self._ms(self.est_service_s))
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None:
            bucket = TokenBucket(self._cfg.rate_per_s, self._cfg.burst, float(self._cfg.burst), now)
            self._buckets[tenant] = bucket
        wait = bucket.take(now)
        if wait > 0.0:
            raise RateLimited("request rate above this tenant's limit", retry_after_ms=self._ms(wait))
        self._inflight[tenant] = inflight + 1
        self._queued_total += 1

    def release(self, tenant: str) -> None:
        n = self._inflight.get(tenant, 0)
        if n <= 1:
            self._inflight.pop(tenant, None)
        else:
            self._inflight[tenant] = n - 1
        self._queued_total = max(0, self._queued_total - 1)

    def inflight(self, tenant: str) -> int:
        return self._inflight.get(tenant, 0)

    @property
    def queued(self) -> int:
        return self._queued_total

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, math.ceil(seconds * 1000))
