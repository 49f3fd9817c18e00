"""``build_source`` / ``build_sources``: one Source per typed config entry, uniquely named."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.sources import (
    HomeAssistantRest,
    HomeAssistantWebSocket,
    HostSensors,
    HttpIngest,
    MqttSubscriber,
    Simulator,
    Source,
    build_source,
    build_sources,
)
from shared.config import edge as config


def configs(tmp_path: Path) -> list[config.Source]:
    token = tmp_path / "token"
    return [
        config.MqttSource(type="mqtt", topics=(config.MqttTopic(topic="a/b", entity_id="sensor.a_b"),)),
        config.HttpSource(type="http"),
        config.HomeAssistantSource(type="homeassistant", url="http://ha:8123", token_file=token),
        config.HomeAssistantSource(type="homeassistant", url="http://ha:8123", token_file=token, mode="rest"),
        config.HostSource(type="host"),
        config.MqttSource(type="mqtt", port=1884, topics=(config.MqttTopic(topic="c", entity_id="sensor.c"),)),
    ]


def test_build_sources_maps_each_config_type_and_names_duplicates(tmp_path: Path) -> None:
    sources = build_sources(configs(tmp_path), "edge-1")
    assert [type(s) for s in sources] == [
        MqttSubscriber,
        HttpIngest,
        HomeAssistantWebSocket,
        HomeAssistantRest,
        HostSensors,
        MqttSubscriber,
    ]
    assert [s.name for s in sources] == ["mqtt", "http", "homeassistant", "homeassistant#2", "host", "mqtt#2"]
    assert all(isinstance(s, Source) and s.static_records() == [] for s in sources)


@pytest.mark.parametrize("home", [1, 2])
def test_build_source_simulator_knows_its_home(home: int) -> None:
    source = build_source(config.SimulatorSource(type="simulator", home=home, seed=3, homes=2), "edge-1")
    assert isinstance(source, Simulator)
    assert source.home.home_id == f"home{home}"
    assert any(r.sensitive for r in source.static_records())
