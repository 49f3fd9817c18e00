"""Where chaos cases run: a gateway process, an attacker and a well-behaved tenant, and the verdicts.

A case is *survived* when the gateway did what the catalogue says (a stable error code, a counted
drop, a refused handshake, ...) AND afterwards the gateway process is alive, the well-behaved tenant
(``home2``, its own connection) is still served, and the gateway's RSS is within
``baseline + RSS_GROWTH_BOUND_MB``. The same catalogue feeds the pytest suite (one test per case) and
``llmtwin bench chaos`` (its ``bad_inputs_tried`` / ``bad_inputs_survived``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Literal, Protocol

import zmq
import zmq.asyncio

from benchmarks.chaos.probe import Probe, ProbeOptions
from benchmarks.chaos.report import ChaosCounts
from benchmarks.chaos.rig import GatewayRig
from shared.protocol import messages as m

ATTACKER = "home1"  # an authenticated tenant that sends hostile input (the most common threat)
GOOD = "home2"  # a well-behaved tenant that must keep being served
# The gateway may grow this much above its RSS after warm-up while the whole catalogue runs against
# it (a 10,000-part message, 1 MiB frames, lz4 bombs, floods, reconnect storms).
RSS_GROWTH_BOUND_MB = 128.0
SERVED_EVERY = 8  # besides a PING after every case, a query through the engine after every 8th


class Case(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def group(self) -> str: ...
    @property
    def expected(self) -> str: ...

    async def run(self, arena: Arena) -> str | None:
        """Throw the input; None when the gateway did what ``expected`` says, else what it did."""
        ...


@dataclass(frozen=True, slots=True)
class Scenario:
    """A case that needs more than one message (flows, auth): a coroutine that returns its verdict."""

    name: str
    group: str
    expected: str
    play: Callable[[Arena], Awaitable[str | None]]

    async def run(self, arena: Arena) -> str | None:
        return await self.play(arena)


@dataclass(frozen=True, slots=True)
class CaseResult:
    name: str
    group: str
    expected: str
    ok: bool  # the gateway did what the catalogue says
    served: bool  # the well-behaved tenant was served afterwards
    alive: bool
    rss_mb: float
    reason: str = ""

    @property
    def survived(self) -> bool:
        return self.ok and self.served and self.alive and not self.reason.startswith("rss")


@dataclass(slots=True)
class Arena:
    """A running gateway with an attacker probe (``home1``) and a well-behaved probe (``home2``)."""

    rig: GatewayRig
    ctx: zmq.asyncio.Context = field(default_factory=zmq.asyncio.Context)
    attacker: Probe | None = None
    good: Probe | None = None
    baseline_rss_mb: float = 0.0
    max_rss_mb: float = 0.0
    checks: int = 0
    good_sent: int = 0
    good_acked: int = 0

    async def __aenter__(self) -> Arena:
        self.good = await Probe(self.ctx, self.rig.endpoint, ProbeOptions(self.rig.keys(GOOD))).__aenter__()
        await self.reconnect_attacker()
        await self.good.barrier(60)
        if await self._query(self.good) is None:  # warm-up: the engine's first run allocates its buffers
            raise RuntimeError("the well-behaved tenant is not served before any case ran")
        self.baseline_rss_mb = self.max_rss_mb = self.rig.rss_mb()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for probe in (self.attacker, self.good):
            if probe is not None:
                await probe.__aexit__(None, None, None)
        self.ctx.destroy(linger=0)  # closes what a failed case left open: term() would wait for it

    def probe(self, options: ProbeOptions) -> Probe:
        """A new probe on this arena's context (use it with ``async with``)."""
        return Probe(self.ctx, self.rig.endpoint, options)

    async def reconnect_attacker(self) -> Probe:
        """A fresh attacker connection (after a case that made the gateway drop the old one)."""
        if self.attacker is not None:
            await self.attacker.__aexit__(None, None, None)
        self.attacker = await self.probe(ProbeOptions(self.rig.keys(ATTACKER))).__aenter__()
        return self.attacker

    @property
    def rss_bound_mb(self) -> float:
        return self.baseline_rss_mb + RSS_GROWTH_BOUND_MB

    # ---- verdicts ------------------------------------------------------------------------------

    async def check(self, case: Case) -> CaseResult:
        try:
            reason = await case.run(self)
        except TimeoutError:
            reason = "timed out waiting for the gateway"
        except Exception as exc:  # a verdict, not a crash of the suite: the next case still runs
            reason = f"{type(exc).__name__}: {exc}"
        ok = reason is None
        alive = self.rig.alive()
        served = alive and await self.good_served(query=self.checks % SERVED_EVERY == 0)
        self.checks += 1
        rss = self.rig.rss_mb()
        self.max_rss_mb = max(self.max_rss_mb, rss)
        if ok and rss > self.rss_bound_mb:
            reason = f"rss {rss:.0f} MB above the bound {self.rss_bound_mb:.0f} MB"
        return CaseResult(case.name, case.group, case.expected, ok, served, alive, round(rss, 1), reason or "")

    async def good_served(self, *, query: bool = False) -> bool:
        assert self.good is not None
        self.good_sent += 1
        try:
            await self.good.barrier()
            if query and await self._query(self.good) is None:
                return False
        except (TimeoutError, RuntimeError):
            return False
        self.good_acked += 1
        return True

    @staticmethod
    async def _query(probe: Probe) -> m.Final | None:
        reply = await probe.request(m.Query(GOOD, "How is the house?", max_new_tokens=2), timeout_s=60)
        return reply if isinstance(reply, m.Final) else None


def counts(arena: Arena, results: Sequence[CaseResult]) -> ChaosCounts:
    """One part's counts: every case is a bad input tried; the well-behaved tenant's checks are the
    messages sent (and acknowledged) alongside."""
    return ChaosCounts(
        sent=arena.good_sent,
        acked=arena.good_acked,
        bad_inputs_tried=len(results),
        bad_inputs_survived=sum(r.survived for r in results),
        max_rss_mb=arena.max_rss_mb,
        details={
            "rss_baseline_mb": round(arena.baseline_rss_mb, 1),
            "rss_bound_mb": round(arena.rss_bound_mb, 1),
            "cases": [asdict(r) | {"survived": r.survived} for r in results],
            "failed": [r.name for r in results if not r.survived],
        },
    )


async def run_cases(arena: Arena, cases: Sequence[Case]) -> list[CaseResult]:
    return [await arena.check(case) for case in cases]


Kind = Literal["error", "drop", "served", "disconnect"]
