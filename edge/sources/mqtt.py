"""The MQTT source: subscribes to the configured topics on a broker and turns payloads into readings.

One topic may feed several entities (a Tasmota ``SENSOR`` message carries power and energy), and
topics may hold MQTT wildcards. Bad input from devices is expected, not exceptional: a malformed
payload is counted by kind and logged once per topic and kind, and the source keeps running. Only
the broker link failing (refused, dropped, timed out) is a :class:`~edge.readings.SourceError`, so
the coordinator marks the entities unavailable and reconnects with back-off.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Final

import aiomqtt

from edge.readings import Reading, Sink, SourceError
from edge.sources.base import OnceLog, Source, announce_up
from edge.sources.clock import SYSTEM_CLOCK, Clock
from edge.sources.mqtt_payload import PayloadRejected, decode
from shared.config.edge import MqttSource, MqttTopic

log = logging.getLogger(__name__)

MAX_QUEUED_MESSAGES: Final = 10_000  # a flooding device drops messages instead of growing memory


class MqttSubscriber(Source):
    """Subscribes to ``cfg.topics`` on ``cfg.host:cfg.port``; see the module docstring."""

    def __init__(
        self,
        cfg: MqttSource,
        *,
        clock: Clock = SYSTEM_CLOCK,
        name: str = "mqtt",
        timeout_s: float = 10.0,
        keepalive_s: int = 30,
    ) -> None:
        super().__init__(name)
        self._cfg = cfg
        self._clock = clock
        self._timeout_s = timeout_s
        self._keepalive_s = keepalive_s
        self._exact: dict[str, list[MqttTopic]] = defaultdict(list)
        self._wildcards: list[MqttTopic] = []
        for route in cfg.topics:
            _check_filter(route.topic)
            if "+" in route.topic or "#" in route.topic:
                self._wildcards.append(route)
            else:
                self._exact[route.topic].append(route)
        self.problems = OnceLog(log)
        self.accepted = 0

    @property
    def subscriptions(self) -> list[str]:
        return sorted({route.topic for route in self._cfg.topics})

    async def run(self, sink: Sink) -> None:
        where = f"{self.name}: broker {self._cfg.host}:{self._cfg.port}"
        try:
            async with aiomqtt.Client(
                self._cfg.host,
                self._cfg.port,
                identifier=self._cfg.client_id or None,
                timeout=self._timeout_s,
                keepalive=self._keepalive_s,
                max_queued_incoming_messages=MAX_QUEUED_MESSAGES,
            ) as client:
                await client.subscribe([(topic, 0) for topic in self.subscriptions])
                announce_up(sink)
                async for message in client.messages:
                    self.handle(message.topic.value, _payload_bytes(message.payload), sink)
        except aiomqtt.MqttError as err:
            raise SourceError(f"{where}: {err}") from err

    def handle(self, topic: str, payload: bytes, sink: Sink) -> None:
        """Route one message to the entities configured for its topic; count and drop bad ones."""
        routes = self.routes(topic)
        if not routes:
            self.problems.report(topic, "unknown_topic", "%s: message on unconfigured topic %r", self.name, topic)
            return
        now = self._clock.time()
        for route in routes:
            try:
                state, attributes = decode(route, payload)
            except PayloadRejected as err:
                self.problems.report(
                    topic, err.kind, "%s: dropped payload on %r (%s): %s", self.name, topic, err.kind, err
                )
                continue
            self.accepted += 1
            sink(Reading(route.entity_id, state, attributes, now, self.name))

    def routes(self, topic: str) -> list[MqttTopic]:
        """The configured topics (exact or wildcard) a message on ``topic`` belongs to."""
        found = list(self._exact.get(topic, ()))
        if self._wildcards:
            parsed = aiomqtt.Topic(topic)
            found += [route for route in self._wildcards if parsed.matches(route.topic)]
        return found


def _check_filter(topic: str) -> None:
    """Reject a malformed topic filter at build time: at subscribe time it would fail on every retry."""
    try:
        aiomqtt.Wildcard(topic)
    except ValueError:
        raise SourceError(f"mqtt: invalid topic filter {topic[:80]!r} ('#' only as the last level)") from None


def _payload_bytes(payload: bytes | bytearray | str | int | float | None) -> bytes:
    """aiomqtt types payloads loosely; received ones are bytes, but normalise to be safe."""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")
