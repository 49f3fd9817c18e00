"""The one interface every sensor source implements, plus the small pieces they share.

A :class:`Source` runs until cancelled, pushing :class:`~edge.readings.Reading` objects into a sink,
and raises :class:`~edge.readings.SourceError` (and nothing else on purpose) when its device, broker
or server fails. It does not retry, back off, or mark entities unavailable: the
:class:`~edge.sources.coordinator.Coordinator` does that for every source in the same way, so each
source stays a straight translation of one input format.

Poll-based sources (host sensors, Home Assistant REST) derive from :class:`PollingSource`, which
bounds every poll with a timeout: a device that never answers becomes a ``SourceError`` instead of
a task that hangs forever while the twin serves stale values.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path

from edge.readings import Reading, Sink, SourceError, StaticRecord
from edge.sources.clock import SYSTEM_CLOCK, Clock

MAX_POLL_TIMEOUT_S = 30.0


class Feed:
    """A sink that also hears when a source's link comes up; the coordinator hands one to ``run``.

    Push sources (MQTT, websocket) may be connected long before their first reading arrives; the
    ``up`` signal lets the coordinator log the recovery when the link is back, not at the next event.
    """

    __slots__ = ("_on_reading", "_on_up")

    def __init__(self, on_reading: Sink, on_up: Callable[[], None]) -> None:
        self._on_reading = on_reading
        self._on_up = on_up

    def __call__(self, reading: Reading) -> None:
        self._on_reading(reading)

    def up(self) -> None:
        self._on_up()


def announce_up(sink: Sink) -> None:
    """Say the source's link works (connected, authenticated, polled); a no-op for plain sinks."""
    if isinstance(sink, Feed):
        sink.up()


class Source(abc.ABC):
    """A producer of readings: ``run`` pushes them into a sink until cancelled.

    ``run`` may be called again after it raised (the coordinator restarts sources); it must start
    from a clean connection each time. It returns normally only when the source has nothing more to
    produce, which the coordinator treats as the end of the source.
    """

    name: str

    def __init__(self, name: str) -> None:
        self.name = name

    @abc.abstractmethod
    async def run(self, sink: Sink) -> None:
        """Produce readings into ``sink`` until cancelled; raise SourceError on failure."""

    def static_records(self) -> list[StaticRecord]:
        """Static facts this source knows (the simulator's scenario); most sources know none."""
        return []


class PollingSource(Source):
    """A source that asks its device every ``interval_s``; every poll is bounded by a timeout."""

    def __init__(
        self, name: str, *, interval_s: float, poll_timeout_s: float | None = None, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        super().__init__(name)
        self.interval_s = interval_s
        self.poll_timeout_s = (
            poll_timeout_s if poll_timeout_s is not None else max(1.0, min(interval_s, MAX_POLL_TIMEOUT_S))
        )
        self.clock = clock

    @abc.abstractmethod
    async def poll(self) -> Sequence[Reading]:
        """One round trip to the device: the readings it reports now; SourceError on failure."""

    async def run(self, sink: Sink) -> None:
        while True:
            readings = await self.poll_once()
            announce_up(sink)
            for reading in readings:
                sink(reading)
            await self.clock.sleep(self.interval_s)

    async def poll_once(self) -> Sequence[Reading]:
        """``poll`` bounded by ``poll_timeout_s``: a poll that never returns becomes a SourceError."""
        try:
            async with asyncio.timeout(self.poll_timeout_s):
                return await self.poll()
        except TimeoutError:
            raise SourceError(f"{self.name}: poll did not finish within {self.poll_timeout_s:g} s") from None


class OnceLog:
    """Counts problems by kind and logs each (key, kind) only the first time it is seen.

    Malformed input tends to repeat (a misconfigured device publishes the same bad payload every
    few seconds); one log line per topic and kind is enough to diagnose it, the counters tell how
    often. The set of keys already logged is bounded so hostile input cannot grow it forever.
    """

    def __init__(self, logger: logging.Logger, *, limit: int = 1024) -> None:
        self._logger = logger
        self._limit = limit
        self._seen: set[tuple[Hashable, str]] = set()
        self.counts: Counter[str] = Counter()

    def report(self, key: Hashable, kind: str, message: str, *args: object) -> bool:
        """Count one ``kind`` problem; log ``message % args`` if ``(key, kind)`` is new. True if logged."""
        self.counts[kind] += 1
        if (key, kind) in self._seen or len(self._seen) >= self._limit:
            return False
        self._seen.add((key, kind))
        self._logger.warning(message, *args)
        return True


def read_token(path: Path) -> str:
    """A bearer token from a file (stripped); SourceError if unreadable or empty.

    Read at every (re)start rather than once at load, so rotating the file takes effect on the
    next reconnect without restarting the daemon.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise SourceError(f"cannot read token_file {path}: {err}") from err
    if not token:
        raise SourceError(f"token_file {path} is empty")
    return token
