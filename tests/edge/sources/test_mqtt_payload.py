"""MQTT payload decoding as a table: Zigbee2MQTT, Tasmota and plain styles, and every rejection kind."""

from __future__ import annotations

import json

import pytest

from edge.readings import AttrValue
from edge.sources.mqtt_payload import MAX_PAYLOAD_BYTES, PayloadRejected, decode
from shared.config.edge import MqttTopic


def route(style: str = "zigbee2mqtt", fields: dict[str, str] | None = None) -> MqttTopic:
    return MqttTopic(topic="t", entity_id="light.x", style=style, fields=fields or {})  # type: ignore[arg-type]


Case = tuple[MqttTopic, bytes, str, dict[str, AttrValue]]

ACCEPTED: list[Case] = [
    (
        route(),
        b'{"state":"ON","brightness":180,"linkquality":90,"color":{"x":0.3}}',
        "on",
        {"brightness": 180, "linkquality": 90},  # nested objects are skipped in the flat default
    ),
    (route(), b'{"state":"OFF","brightness":null}', "off", {"brightness": None}),
    (route(), b'{"state":0}', "0", {}),  # zero is a state
    (route(), b'{"state":0.0,"tags":["a",1]}', "0.0", {"tags": ("a", 1)}),
    (route(), b'{"state":true}', "on", {}),
    (
        route(fields={"temperature": "state", "humidity": "humidity"}),
        b'{"temperature":21.5,"humidity":0,"battery":99}',
        "21.5",
        {"humidity": 0},
    ),
    (route(fields={"occupancy": "state"}), b'{"occupancy":false}', "off", {}),
    (
        route("tasmota", {"ENERGY.Power": "state", "ENERGY.Total": "energy_kwh"}),
        b'{"Time":"2026-06-01T10:00:00","ENERGY":{"Power":45,"Total":1.2}}',
        "45",
        {"energy_kwh": 1.2},
    ),
    (route("tasmota"), b'{"POWER":"On"}', "on", {}),
    (route("tasmota", {"ENERGY.Power": "state"}), b'{"ENERGY":{"Power":0}}', "0", {}),
    (route("tasmota", {"a.b": "state"}), b'{"a.b":"literal key wins"}', "literal key wins", {}),
    (route("plain"), b"ON", "on", {}),
    (route("plain"), b" 21.5\n", "21.5", {}),
    (route("plain"), b"0", "0", {}),
    (route("plain"), b"Opening", "Opening", {}),
]


@pytest.mark.parametrize(("cfg", "payload", "state", "attributes"), ACCEPTED)
def test_decodes(cfg: MqttTopic, payload: bytes, state: str, attributes: dict[str, AttrValue]) -> None:
    assert decode(cfg, payload) == (state, attributes)


REJECTED: list[tuple[MqttTopic, bytes, str]] = [
    (route(), b"{not json", "not_json"),
    (route(), b'{"state": NaN}', "not_json"),
    (route(), b"[" * 5000 + b"]" * 5000, "not_json"),
    (route(), b"\xff\xfe", "not_text"),
    (route(), b'["state", "on"]', "wrong_type"),
    (route(), b'{"state": {"on": true}}', "wrong_type"),
    (route(), b'{"state": "' + b"x" * 300 + b'"}', "wrong_type"),
    (route(fields={"state": "state", "color": "color"}), b'{"state":"ON","color":{"x":1}}', "wrong_type"),
    (route(), b'{"brightness": 10}', "missing_state"),
    (route(), b'{"state": null}', "missing_state"),
    (route("tasmota", {"ENERGY.Power": "state"}), b'{"ENERGY": {"Voltage": 230}}', "missing_state"),
    (route("plain"), b"   ", "missing_state"),
    (route(), json.dumps({"state": "on", "pad": "x" * MAX_PAYLOAD_BYTES}).encode(), "too_large"),
]


@pytest.mark.parametrize(("cfg", "payload", "kind"), REJECTED)
def test_rejects(cfg: MqttTopic, payload: bytes, kind: str) -> None:
    with pytest.raises(PayloadRejected) as caught:
        decode(cfg, payload)
    assert caught.value.kind == kind
    assert b"x" * 20 not in str(caught.value).encode()  # messages never echo payload bytes
