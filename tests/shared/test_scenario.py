"""The scenario generator: deterministic bytes, the promised sizes, secrets, and a believable trace."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import ScenarioError
from shared.scenario import (
    DOMAINS,
    AttrValue,
    Scenario,
    StateChange,
    brightness_to_pct,
    generate,
    pct_to_brightness,
    state_objects,
)

REPO = Path(__file__).resolve().parents[2]
SECRETS = ("owner_name", "door_code", "alarm_pin", "wifi_password", "presence_schedule")


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate()


@pytest.fixture(scope="module")
def small() -> Scenario:
    return generate(seed=7, homes=1, duration_s=3600.0)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _changes(scenario: Scenario, prefix: str) -> Iterator[StateChange]:
    return (c for c in scenario.trace if c.entity_id.startswith(prefix))


# ---- determinism and serialisation


def test_same_seed_gives_identical_bytes(scenario: Scenario) -> None:
    assert _sha(generate().to_json()) == _sha(scenario.to_json())


def test_bytes_do_not_depend_on_the_hash_seed(scenario: Scenario) -> None:
    code = (
        "import hashlib, sys; from shared.scenario import generate; "
        "sys.stdout.write(hashlib.sha256(generate().to_json()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout == _sha(scenario.to_json())


def test_different_seeds_differ(small: Scenario) -> None:
    other = generate(seed=8, homes=1, duration_s=3600.0)
    assert other.to_json() != small.to_json()
    assert other.sensitive_values() != small.sensitive_values()


def test_json_round_trip(scenario: Scenario) -> None:
    data = scenario.to_json()
    back = Scenario.from_json(data)
    assert back == scenario
    assert back.to_json() == data
    canonical = json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical.encode("utf-8") == data


def test_from_json_rejects_bad_documents(small: Scenario) -> None:
    doc = json.loads(small.to_json())
    with pytest.raises(ScenarioError, match="does not parse"):
        Scenario.from_json(b"{not json")
    with pytest.raises(ScenarioError, match="format"):
        Scenario.from_json(json.dumps({**doc, "format": "other"}))
    swapped = {**doc, "trace": [doc["trace"][1], doc["trace"][0], *doc["trace"][2:]]}
    with pytest.raises(ScenarioError, match="sorted"):
        Scenario.from_json(json.dumps(swapped))
    unknown = {**doc, "trace": [*doc["trace"], [1.0e9, "light.nowhere", "on", {}]]}
    with pytest.raises(ScenarioError, match=r"trace\[\d+\]"):
        Scenario.from_json(json.dumps(unknown))
    with pytest.raises(ScenarioError, match=r"non-finite|does not parse"):
        Scenario.from_json(small.to_json().replace(b'"duration_s":3600.0', b'"duration_s":NaN'))


# ---- static side


def test_default_size(scenario: Scenario) -> None:
    assert len(scenario.homes) == 3
    assert 1500 <= scenario.n_static_records <= 1700
    assert scenario.n_static_records == len(list(scenario.static_facts()))
    for home in scenario.homes:
        assert home.domains() == set(DOMAINS), home.home_id
        assert 8 <= len(home.rooms) <= 10
        for entity in home.entities:
            assert entity.static and all(f.entity_id == entity.entity_id for f in entity.static)


def test_entity_ids_follow_home_assistant_rules(scenario: Scenario) -> None:
    pattern = re.compile(r"^[a-z0-9_]+\.[a-z0-9_]+$")
    ids = [e.entity_id for e in scenario.entities()]
    assert len(ids) == len(set(ids))
    for home in scenario.homes:
        for entity in home.entities:
            assert pattern.match(entity.entity_id), entity.entity_id
            if entity.entity_id != home.profile_id:
                assert (
                    entity.entity_id
                    == f"{entity.domain}.{home.home_id}_{entity.room}_"
                    + entity.entity_id.split(f"_{entity.room}_", 1)[1]
                )
                assert entity.room in home.rooms


def test_default_homes_share_one_group(scenario: Scenario) -> None:
    assert len({h.group for h in scenario.homes}) == 1
    assert len({h.region for h in scenario.homes}) == 1


def test_larger_worlds_form_groups_of_three_to_five() -> None:
    world = generate(seed=11, homes=23, duration_s=600.0)
    sizes = Counter(h.group for h in world.homes)
    assert sum(sizes.values()) == 23
    assert all(3 <= n <= 7 for n in sizes.values()), sizes
    for group in sizes:
        assert len({h.region for h in world.homes if h.group == group}) == 1


def test_every_home_has_its_secrets_marked_sensitive(scenario: Scenario) -> None:
    seen: list[str] = []
    for home in scenario.homes:
        facts = {f.attribute: f for f in home.profile.static}
        for name in SECRETS:
            assert facts[name].sensitive, name
            assert facts[name].sensitivity == "sensitive"
            seen.append(facts[name].rendered())
        assert re.fullmatch(r"[1-9]\d{5}", str(facts["door_code"].value))
        assert "away" in str(facts["presence_schedule"].value)
        assert not facts["region"].sensitive
    assert set(seen) <= scenario.sensitive_values()
    assert len(set(seen)) == len(seen)  # distinctive: no two homes share a secret


def test_secrets_never_appear_in_state_objects(scenario: Scenario) -> None:
    text = "\n".join(json.dumps(obj, ensure_ascii=False) for obj in state_objects(scenario))
    secrets = scenario.sensitive_values()
    assert len(secrets) == 5 * len(scenario.homes)
    for value in secrets:
        assert value not in text, value
    assert not any(name in text for name in SECRETS)


# ---- dynamic side


def test_trace_is_sorted_in_range_and_known(scenario: Scenario) -> None:
    keys = [(c.ts_s, c.entity_id) for c in scenario.trace]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert all(0.0 <= c.ts_s < scenario.duration_s for c in scenario.trace)
    known = {e.entity_id for e in scenario.entities()}
    assert {c.entity_id for c in scenario.trace} == known
    initial = scenario.initial_states()
    assert set(initial) == known and all(c.ts_s == 0.0 for c in initial.values())
    assert 20_000 <= len(scenario.trace) <= 80_000


def test_only_real_changes_are_reported(scenario: Scenario) -> None:
    last: dict[str, tuple[str, dict[str, AttrValue]]] = {}
    for change in scenario.trace:
        current = (change.state, dict(change.attributes))
        if change.entity_id in last:
            previous = last[change.entity_id]
            dynamic = {k: v for k, v in previous[1].items() if k in current[1]}
            assert (previous[0], dynamic) != current, change
        last[change.entity_id] = current


def test_light_brightness_within_static_range(scenario: Scenario) -> None:
    checked = 0
    for change in _changes(scenario, "light."):
        entity = scenario.entity(change.entity_id)
        brightness = change.attributes.get("brightness")
        if change.state == "off":
            assert brightness is None
            continue
        assert isinstance(brightness, int) and 0 < brightness <= 255
        low, high = entity.integer("min_brightness_pct"), entity.integer("max_brightness_pct")
        assert low <= brightness_to_pct(brightness) <= high, change
        if "color_temp" in entity.dynamic_attributes:
            mireds = change.attributes["color_temp"]
            assert isinstance(mireds, int)
            assert entity.integer("min_mireds") <= mireds <= entity.integer("max_mireds")
        checked += 1
    assert checked > 100


def test_brightness_conversion_is_consistent() -> None:
    for pct in range(101):
        assert brightness_to_pct(pct_to_brightness(pct)) == pct
    assert pct_to_brightness(100) == 255


def test_energy_meters_only_increase(scenario: Scenario) -> None:
    meters = [
        e
        for e in scenario.entities()
        if e.domain == "sensor" and e.public_facts().get("device_class") == "energy"
    ]
    assert meters
    for meter in meters:
        readings = [float(c.state) for c in scenario.changes_of(meter.entity_id)]
        assert all(b > a for a, b in itertools.pairwise(readings)), meter.entity_id
        if meter.entity_id.endswith("_main_energy"):
            assert len(readings) > 100  # the whole-home meter always moves


def test_indoor_temperatures_are_plausible(scenario: Scenario) -> None:
    values: list[float] = []
    for entity in scenario.entities():
        if entity.room == "garden":
            continue
        if entity.domain == "sensor" and entity.public_facts().get("device_class") == "temperature":
            values += [float(c.state) for c in scenario.changes_of(entity.entity_id)]
        elif entity.domain == "climate":
            values += [
                float(str(c.attributes["current_temperature"])) for c in scenario.changes_of(entity.entity_id)
            ]
    assert len(values) > 1000
    assert all(10.0 <= v <= 35.0 for v in values)
    assert all(math.isclose(v, round(v, 1)) for v in values)


def test_lights_are_off_at_night_and_on_in_the_evening(scenario: Scenario) -> None:
    def lights_on(ts: float) -> int:
        return sum(
            c.state == "on" for c in scenario.states_at(ts).values() if c.entity_id.startswith("light.")
        )

    n_lights = sum(e.domain == "light" for e in scenario.entities())
    night, evening = lights_on(3 * 3600.0), lights_on(21.5 * 3600.0)
    assert night <= 0.15 * n_lights
    assert evening > night and evening >= 0.15 * n_lights


def test_front_door_is_locked_while_nobody_is_home(scenario: Scenario) -> None:
    away_seen = 0
    for ts in range(0, 86400, 300):
        states = scenario.states_at(float(ts))
        for home in scenario.homes:
            if states[home.profile_id].state == "away":
                away_seen += 1
                assert states[f"lock.{home.home_id}_hallway_front_door"].state == "locked"
                assert states[f"binary_sensor.{home.home_id}_hallway_front_door"].state == "off"
    assert away_seen > 0


def test_media_volume_respects_the_owner_limit(scenario: Scenario) -> None:
    for change in _changes(scenario, "media_player."):
        volume = change.attributes["volume_level"]
        if change.state == "off":
            assert volume is None
        else:
            limit = scenario.entity(change.entity_id).integer("max_volume_pct") / 100
            assert isinstance(volume, float) and 0.0 < volume <= limit


def test_short_and_multi_day_scenarios() -> None:
    short = generate(seed=3, homes=1, duration_s=1800.0)
    assert all(c.ts_s < 1800.0 for c in short.trace)
    assert set(short.initial_states()) == {e.entity_id for e in short.entities()}
    two_days = generate(seed=3, homes=1, duration_s=2 * 86400.0)
    assert max(c.ts_s for c in two_days.trace) > 86400.0
    assert Scenario.from_json(two_days.to_json()) == two_days


def test_lookups(scenario: Scenario) -> None:
    home = scenario.homes[0]
    assert scenario.entity(home.profile_id) is home.profile
    assert scenario.home_of(home.profile_id) is home
    assert scenario.home(home.home_id) is home
    with pytest.raises(ScenarioError, match="unknown entity"):
        scenario.entity("light.nowhere")
    with pytest.raises(ScenarioError, match="no static fact"):
        home.profile.fact("no_such_fact")


# ---- argument validation


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"homes": 0}, "homes"),
        ({"homes": 501}, "homes"),
        ({"homes": True}, "homes"),
        ({"homes": 2.0}, "homes"),
        ({"duration_s": 0.0}, "duration_s"),
        ({"duration_s": -5.0}, "duration_s"),
        ({"duration_s": math.nan}, "duration_s"),
        ({"duration_s": math.inf}, "duration_s"),
        ({"duration_s": 40 * 86400.0}, "duration_s"),
        ({"seed": "7"}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"start_iso": "yesterday"}, "start_iso"),
        ({"start_iso": "2026-06-01T00:00:00"}, "start_iso"),
    ],
)
def test_generate_rejects_bad_arguments(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ScenarioError, match=field):
        generate(**kwargs)  # type: ignore[arg-type]
