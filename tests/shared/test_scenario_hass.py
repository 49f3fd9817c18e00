"""Home Assistant state objects: the trace round-trips, and bad objects are refused by field name."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import ScenarioError
from shared.scenario import (
    Scenario,
    StateChange,
    change_from_state_object,
    from_state_object,
    generate,
    state_objects,
    to_state_object,
    ts_seconds,
)

GOOD: dict[str, Any] = {
    "entity_id": "light.home1_kitchen_ceiling",
    "state": "on",
    "attributes": {"brightness": 180, "color_temp": 370, "supported_color_modes": ["color_temp"], "x": None},
    "last_changed": "2026-06-01T19:02:11.250000+00:00",
    "last_updated": "2026-06-01T19:02:11.250000+00:00",
}


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate()


def test_every_state_object_parses_back_to_its_change(scenario: Scenario) -> None:
    objects = list(state_objects(scenario))
    assert len(objects) == len(scenario.trace)
    start = datetime.fromisoformat(scenario.start_iso)
    wire = json.loads(json.dumps(objects))  # what a client would really receive
    for k, (obj, change) in enumerate(zip(wire, scenario.trace, strict=True)):
        entity_id, state, attributes, when = from_state_object(obj)
        assert (entity_id, state, attributes) == (change.entity_id, change.state, dict(change.attributes))
        assert when == start + timedelta(seconds=change.ts_s)
        if k % 100 == 0:
            assert change_from_state_object(obj, scenario.start_iso) == change
            assert ts_seconds(when, scenario.start_iso) == change.ts_s


def test_timestamps_are_utc_and_last_changed_tracks_the_state(scenario: Scenario) -> None:
    since: dict[str, tuple[str, str]] = {}
    attribute_only = 0
    for obj in state_objects(scenario):
        changed, updated = str(obj["last_changed"]), str(obj["last_updated"])
        assert changed.endswith("+00:00") and updated.endswith("+00:00")
        assert datetime.fromisoformat(changed) <= datetime.fromisoformat(updated)
        entity_id, state = str(obj["entity_id"]), str(obj["state"])
        if entity_id in since and since[entity_id][0] == state:
            assert changed == since[entity_id][1]
            attribute_only += 1
        else:
            assert changed == updated
        since[entity_id] = (state, changed)
    assert attribute_only > 0


def test_initial_objects_carry_public_static_attributes(scenario: Scenario) -> None:
    initial = scenario.initial_states()
    for entity in scenario.entities():
        attributes = to_state_object(initial[entity.entity_id], scenario.start_iso)["attributes"]
        assert isinstance(attributes, dict)
        assert attributes["friendly_name"] == entity.friendly_name
        facts = entity.public_facts()
        for name in (
            "device_class",
            "unit_of_measurement",
            "min_mireds",
            "max_mireds",
            "hvac_modes",
            "source_list",
        ):
            if name in facts:
                expected = facts[name]
                assert attributes[name] == (list(expected) if isinstance(expected, tuple) else expected)
        assert not {f.attribute for f in entity.static if f.sensitive} & set(attributes)


def test_to_state_object_shape() -> None:
    change = StateChange(61.5, "sensor.home1_kitchen_temperature", "21.4", {})
    obj = to_state_object(change)
    assert obj == {
        "entity_id": "sensor.home1_kitchen_temperature",
        "state": "21.4",
        "attributes": {},
        "last_changed": "2026-06-01T00:01:01.500000+00:00",
        "last_updated": "2026-06-01T00:01:01.500000+00:00",
    }


def test_good_object_parses_with_lists_as_tuples_and_other_zones() -> None:
    entity_id, state, attributes, when = from_state_object(GOOD)
    assert (entity_id, state) == ("light.home1_kitchen_ceiling", "on")
    assert attributes["supported_color_modes"] == ("color_temp",)
    assert attributes["x"] is None
    assert when == datetime(2026, 6, 1, 19, 2, 11, 250000, tzinfo=UTC)
    shifted = {**GOOD, "last_updated": "2026-06-01T21:02:11.25+02:00"}
    assert from_state_object(shifted)[3] == when
    zulu = {k: v for k, v in GOOD.items() if k != "last_updated"} | {
        "last_changed": "2026-06-01T19:02:11.25Z"
    }
    assert from_state_object(zulu)[3] == when


LONG = "x" * 5000


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"entity_id": None}, "entity_id"),
        ({"entity_id": 42}, "entity_id"),
        ({"entity_id": "Light.Kitchen"}, "entity_id"),
        ({"entity_id": "light"}, "entity_id"),
        ({"entity_id": "light.kitchen-1"}, "entity_id"),
        ({"entity_id": "light." + LONG}, "entity_id"),
        ({"state": None}, "state"),
        ({"state": 21.5}, "state"),
        ({"state": LONG}, "state"),
        ({"attributes": None}, "attributes"),
        ({"attributes": [1, 2]}, "attributes"),
        ({"attributes": "brightness=3"}, "attributes"),
        ({"attributes": {"nested": {"a": 1}}}, "attributes"),
        ({"attributes": {"bad": math.nan}}, "attributes"),
        ({"attributes": {"bad": [[1]]}}, "attributes"),
        ({"attributes": {"": 1}}, "attributes"),
        ({"attributes": {"long": LONG}}, "attributes"),
        ({"last_changed": None}, "last_changed"),
        ({"last_changed": "yesterday"}, "last_changed"),
        ({"last_changed": "2026-06-01T19:02:11"}, "last_changed"),
        ({"last_changed": 1780000000}, "last_changed"),
        ({"last_changed": LONG}, "last_changed"),
        ({"last_updated": "2026-13-01T00:00:00+00:00"}, "last_updated"),
    ],
)
def test_bad_objects_are_refused_by_field(patch: dict[str, Any], field: str) -> None:
    obj = {**GOOD, **patch}
    obj = {k: v for k, v in obj.items() if v is not None}  # None in the patch = field missing
    with pytest.raises(ScenarioError, match=field) as info:
        from_state_object(obj)
    message = str(info.value)
    assert "x" * 61 not in message
    assert len(message) < 200


def test_non_mapping_is_refused() -> None:
    with pytest.raises(ScenarioError, match="mapping"):
        from_state_object([GOOD])  # type: ignore[arg-type]
