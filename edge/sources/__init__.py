"""Sensor sources: every input the edge daemon reads, behind one interface.

Each configured source (``[[sources]]`` in a device profile) becomes a :class:`Source`;
:func:`build_sources` makes them from the typed config and names them uniquely. The daemon runs
each under a :class:`Coordinator`, which owns retries, back-off, logging and unavailability::

    sources = build_sources(cfg.sources, cfg.device.twin_id)
    async with asyncio.TaskGroup() as tg:
        for source in sources:
            store.add_static(source.static_records())
            tg.create_task(Coordinator(source, store.put).run(), name=f"source:{source.name}")

``store.put`` stands for any :data:`~edge.readings.Sink`: a plain function called on the event loop
for every reading, which must not block (queue or write quickly).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Sequence

from edge.sources.base import Feed, OnceLog, PollingSource, Source, announce_up
from edge.sources.clock import SYSTEM_CLOCK, Clock, SystemClock, VirtualClock
from edge.sources.coordinator import Backoff, Coordinator, CoordinatorStats
from edge.sources.homeassistant import HomeAssistantAuthError, HomeAssistantRest, HomeAssistantWebSocket
from edge.sources.host import HostSensors
from edge.sources.http_ingest import HttpIngest
from edge.sources.mqtt import MqttSubscriber
from edge.sources.simulator import Simulator
from shared.config import edge as config

__all__ = [
    "SYSTEM_CLOCK",
    "Backoff",
    "Clock",
    "Coordinator",
    "CoordinatorStats",
    "Feed",
    "HomeAssistantAuthError",
    "HomeAssistantRest",
    "HomeAssistantWebSocket",
    "HostSensors",
    "HttpIngest",
    "MqttSubscriber",
    "OnceLog",
    "PollingSource",
    "Simulator",
    "Source",
    "SystemClock",
    "VirtualClock",
    "announce_up",
    "build_source",
    "build_sources",
]


def build_source(
    cfg: config.Source,
    twin_id: str,
    *,
    name: str | None = None,
    known_entities: Collection[str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Source:
    """The source for one ``[[sources]]`` entry; ``name`` defaults to its ``type``.

    ``twin_id`` names the host's own sensors (``sensor.<twin_id>_load_1m``); ``known_entities``
    makes the HTTP ingest refuse entities outside that set (422).
    """
    label = name or cfg.type
    match cfg:
        case config.SimulatorSource():
            return Simulator(cfg, clock=clock, name=label)
        case config.MqttSource():
            return MqttSubscriber(cfg, clock=clock, name=label)
        case config.HttpSource():
            return HttpIngest(cfg, known_entities=known_entities, clock=clock, name=label)
        case config.HomeAssistantSource(mode="rest"):
            return HomeAssistantRest(cfg, clock=clock, name=label)
        case config.HomeAssistantSource():
            return HomeAssistantWebSocket(cfg, clock=clock, name=label)
        case config.HostSource():
            return HostSensors(cfg, twin_id, clock=clock, name=label)
    raise TypeError(f"not a source config: {type(cfg).__name__}")  # unreachable for the typed union


def build_sources(
    cfgs: Sequence[config.Source],
    twin_id: str,
    *,
    known_entities: Collection[str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> list[Source]:
    """Every configured source; a type used twice gets ``mqtt``, ``mqtt#2`` ... as names (logs, stats)."""
    seen: Counter[str] = Counter()
    out: list[Source] = []
    for cfg in cfgs:
        seen[cfg.type] += 1
        name = cfg.type if seen[cfg.type] == 1 else f"{cfg.type}#{seen[cfg.type]}"
        out.append(build_source(cfg, twin_id, name=name, known_entities=known_entities, clock=clock))
    return out
