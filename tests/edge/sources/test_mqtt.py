"""The MQTT source against a real mosquitto broker (fixture in tests/edge/conftest.py).

A real aiomqtt client publishes Zigbee2MQTT, Tasmota, plain and malformed payloads; the test then
kills the broker and starts it again on the same port to check unavailability and reconnection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import aiomqtt
import pytest
from collector import Collector

from edge.readings import Reading, SourceError
from edge.sources import Coordinator, CoordinatorStats, Feed, MqttSubscriber, VirtualClock
from shared.config.edge import MqttSource, MqttTopic

TIMEOUT_S = 10


class BrokerLike(Protocol):
    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


TOPICS = (
    MqttTopic(topic="zigbee2mqtt/kitchen_light", entity_id="light.h_kitchen_ceiling"),
    MqttTopic(
        topic="zigbee2mqtt/hall_sensor",
        entity_id="sensor.h_hall_temperature",
        fields={"temperature": "state", "humidity": "humidity"},
    ),
    MqttTopic(
        topic="tele/plug/SENSOR",
        entity_id="sensor.h_plug_power",
        style="tasmota",
        fields={"ENERGY.Power": "state"},
    ),
    MqttTopic(
        topic="tele/plug/SENSOR",
        entity_id="sensor.h_plug_energy",
        style="tasmota",
        fields={"ENERGY.Total": "state"},
    ),
    MqttTopic(topic="home/door/state", entity_id="binary_sensor.h_front_door", style="plain"),
    MqttTopic(topic="sensors/+/battery", entity_id="sensor.h_any_battery", style="plain"),
)


def config(port: int) -> MqttSource:
    return MqttSource(type="mqtt", host="127.0.0.1", port=port, client_id="", topics=TOPICS)


async def publish(port: int, *messages: tuple[str, bytes]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)


async def test_zigbee2mqtt_tasmota_plain_and_malformed_payloads(
    mosquitto: BrokerLike, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.mqtt")
    source = MqttSubscriber(config(mosquitto.port), clock=VirtualClock())
    sink = Collector()
    up = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(source.run(Feed(sink, up.set)))
        async with asyncio.timeout(TIMEOUT_S):
            await up.wait()
        await publish(
            mosquitto.port,
            ("zigbee2mqtt/kitchen_light", b'{"state":"ON","brightness":180,"linkquality":90}'),
            ("zigbee2mqtt/hall_sensor", b'{"temperature":0,"humidity":41.5,"battery":99}'),
            ("tele/plug/SENSOR", b'{"ENERGY":{"Power":45,"Total":1.2}}'),
            ("home/door/state", b"OFF"),
            ("sensors/garage/battery", b"87"),
            ("zigbee2mqtt/kitchen_light", b"{not json"),
            ("zigbee2mqtt/kitchen_light", b"still not json"),
            ("zigbee2mqtt/kitchen_light", b'{"state":' + b'"x' * 40_000 + b'"}'),
            ("zigbee2mqtt/kitchen_light", b'{"state":["on"]}'),
            ("zigbee2mqtt/kitchen_light", b'{"state":"OFF"}'),  # after the bad ones: the source kept going
        )
        await sink.wait_for(lambda _: sink.states("light.h_kitchen_ceiling") == ["on", "off"])
        task.cancel()

    by_entity = {r.entity_id: r for r in sink.readings}
    assert dict(sink.readings[0].attributes) == {"brightness": 180, "linkquality": 90}
    assert (by_entity["sensor.h_hall_temperature"].state, dict(by_entity["sensor.h_hall_temperature"].attributes)) == (
        "0",
        {"humidity": 41.5},
    )
    assert by_entity["sensor.h_plug_power"].state == "45"
    assert by_entity["sensor.h_plug_energy"].state == "1.2"
    assert by_entity["binary_sensor.h_front_door"].state == "off"
    assert by_entity["sensor.h_any_battery"].state == "87"
    assert {r.ts for r in sink.readings} == {VirtualClock().time()}
    assert source.problems.counts == {"not_json": 2, "too_large": 1, "wrong_type": 1}
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 3  # once per topic and kind, not once per bad payload
    assert all("zigbee2mqtt/kitchen_light" in line for line in logged)
    assert source.accepted == 7


def test_unknown_topic_is_counted_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.mqtt")
    source = MqttSubscriber(config(1883))
    got: list[Reading] = []
    for _ in range(3):
        source.handle("zigbee2mqtt/unknown_device", b'{"state":"ON"}', got.append)
    assert got == []
    assert source.problems.counts == {"unknown_topic": 3}
    assert len(caplog.records) == 1
    assert [r.entity_id for r in source.routes("sensors/attic/battery")] == ["sensor.h_any_battery"]
    assert source.routes("sensors/attic/deep/battery") == []


def test_a_malformed_topic_filter_is_refused_when_built() -> None:
    bad = MqttSource(type="mqtt", topics=(MqttTopic(topic="zigbee2mqtt/#/x", entity_id="sensor.h_x"),))
    with pytest.raises(SourceError, match="invalid topic filter"):
        MqttSubscriber(bad)


class GatedClock(VirtualClock):
    """Back-off sleeps wait until the test opens the gate (the broker is back), so nothing is timed."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await self.gate.wait()


async def test_broker_down_marks_entities_unavailable_and_reconnects(
    mosquitto: BrokerLike, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="edge.sources.coordinator")
    clock = GatedClock()
    sink = Collector()
    states: asyncio.Queue[CoordinatorStats] = asyncio.Queue()
    source = MqttSubscriber(config(mosquitto.port), clock=clock)
    coordinator = Coordinator(source, sink, clock=clock, on_change=states.put_nowait)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(coordinator.run())
        async with asyncio.timeout(TIMEOUT_S):
            assert (await states.get()).state == "up"
            await publish(mosquitto.port, ("home/door/state", b"ON"), ("tele/plug/SENSOR", b'{"ENERGY":{"Power":0}}'))
            await sink.wait_for(lambda got: len(got) == 2)

            mosquitto.stop()
            assert (await states.get()).state == "down"
            await sink.wait_for(lambda got: len(got) == 4)
            mosquitto.start()
            clock.gate.set()
            assert (await states.get()).state == "up"
            await publish(mosquitto.port, ("home/door/state", b"OFF"))
            await sink.wait_for(lambda got: len(got) == 5)
        task.cancel()

    assert [(r.entity_id, r.state) for r in sink.readings] == [
        ("binary_sensor.h_front_door", "on"),
        ("sensor.h_plug_power", "0"),
        ("binary_sensor.h_front_door", None),
        ("sensor.h_plug_power", None),
        ("binary_sensor.h_front_door", "off"),
    ]
    stats = coordinator.stats
    assert (stats.state, stats.failures, stats.recoveries, stats.marked_unavailable) == ("up", 1, 1, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unavailable" in m for m in messages) == 1
    assert sum("recovered" in m for m in messages) == 1
