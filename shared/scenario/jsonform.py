"""Canonical JSON form of a scenario, and its strict parser.

Canonical means: keys sorted, no whitespace, UTF-8, no NaN/inf, floats written by ``repr`` (the
shortest text that round-trips, identical on every CPython), values quantised at generation time.
So the same seed gives the same bytes and a sha256 of the file identifies a scenario. The trace
is stored as compact ``[ts_s, entity_id, state, attributes]`` rows because it is most of the size.
Parsing checks types and the trace invariants and raises ScenarioError naming the bad path.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final, TypeVar

from shared.errors import ScenarioError
from shared.scenario.model import (
    DOMAINS,
    AttrValue,
    Domain,
    Entity,
    FactValue,
    Home,
    Scenario,
    StateChange,
    StaticFact,
)

T = TypeVar("T")

FORMAT: Final = "llm-twin-scenario/1"


def scenario_to_json(scenario: Scenario) -> bytes:
    doc = {
        "format": FORMAT,
        "seed": scenario.seed,
        "start_iso": scenario.start_iso,
        "duration_s": scenario.duration_s,
        "homes": [_home_doc(h) for h in scenario.homes],
        "trace": [[c.ts_s, c.entity_id, c.state, _attrs_doc(c.attributes)] for c in scenario.trace],
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _home_doc(home: Home) -> dict[str, Any]:
    return {
        "home_id": home.home_id,
        "name": home.name,
        "region": home.region,
        "group": home.group,
        "rooms": list(home.rooms),
        "entities": [
            {
                "entity_id": e.entity_id,
                "domain": e.domain,
                "room": e.room,
                "friendly_name": e.friendly_name,
                "dynamic_attributes": list(e.dynamic_attributes),
                "static": [[f.attribute, _value_doc(f.value), f.sensitive] for f in e.static],
            }
            for e in home.entities
        ],
    }


def _value_doc(value: AttrValue) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _attrs_doc(attrs: Any) -> dict[str, Any]:
    return {k: _value_doc(v) for k, v in attrs.items()}


# ---------------------------------------------------------------------------------------------
# parsing


def scenario_from_json(data: bytes | str) -> Scenario:
    try:
        doc = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"scenario JSON does not parse: {type(exc).__name__}") from None
    root = _dict(doc, "$")
    if root.get("format") != FORMAT:
        raise ScenarioError(f"$.format: expected {FORMAT!r}")
    seed = _typed(root.get("seed"), int, "$.seed")
    duration = _number(root.get("duration_s"), "$.duration_s")
    homes = tuple(_home(h, f"$.homes[{i}]") for i, h in enumerate(_list(root.get("homes"), "$.homes")))
    rows = _list(root.get("trace"), "$.trace")
    trace = tuple(_change(row, f"$.trace[{i}]") for i, row in enumerate(rows))
    scenario = Scenario(seed, _typed(root.get("start_iso"), str, "$.start_iso"), duration, homes, trace)
    check_trace(scenario)
    return scenario


def check_trace(scenario: Scenario) -> None:
    """The trace invariants: sorted by (ts, entity), inside [0, duration), known entities only."""
    known: set[str] = set()
    for entity in scenario.entities():
        if entity.entity_id in known:
            raise ScenarioError(f"duplicate entity {entity.entity_id[:60]!r}")
        known.add(entity.entity_id)
    previous: tuple[float, str] = (-1.0, "")
    for i, change in enumerate(scenario.trace):
        key = (change.ts_s, change.entity_id)
        if key <= previous:
            raise ScenarioError(f"$.trace[{i}]: not sorted by (ts_s, entity_id)")
        if not 0.0 <= change.ts_s < scenario.duration_s:
            raise ScenarioError(f"$.trace[{i}]: ts_s outside [0, duration_s)")
        if change.entity_id not in known:
            raise ScenarioError(f"$.trace[{i}]: unknown entity {change.entity_id[:60]!r}")
        previous = key


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name}")


def _home(doc: object, path: str) -> Home:
    d = _dict(doc, path)
    rooms = tuple(_typed(r, str, f"{path}.rooms") for r in _list(d.get("rooms"), f"{path}.rooms"))
    entities = tuple(
        _entity(e, f"{path}.entities[{i}]") for i, e in enumerate(_list(d.get("entities"), path))
    )
    return Home(
        _typed(d.get("home_id"), str, f"{path}.home_id"),
        _typed(d.get("name"), str, f"{path}.name"),
        _typed(d.get("region"), str, f"{path}.region"),
        _typed(d.get("group"), str, f"{path}.group"),
        rooms,
        entities,
    )


def _entity(doc: object, path: str) -> Entity:
    d = _dict(doc, path)
    entity_id = _typed(d.get("entity_id"), str, f"{path}.entity_id")
    domain = _as_domain(_typed(d.get("domain"), str, f"{path}.domain"), f"{path}.domain")
    dynamic = tuple(
        _typed(a, str, f"{path}.dynamic_attributes") for a in _list(d.get("dynamic_attributes"), path)
    )
    static: list[Any] = []
    for k, row in enumerate(_list(d.get("static"), f"{path}.static")):
        items = _list(row, f"{path}.static[{k}]")
        if len(items) != 3:
            raise ScenarioError(f"{path}.static[{k}]: expected [attribute, value, sensitive]")
        attribute = _typed(items[0], str, f"{path}.static[{k}][0]")
        sensitive = _typed(items[2], bool, f"{path}.static[{k}][2]")
        static.append((attribute, _fact_value(items[1], f"{path}.static[{k}][1]"), sensitive))
    facts = tuple(StaticFact(entity_id, a, v, s) for a, v, s in static)
    room = _typed(d.get("room"), str, f"{path}.room")
    name = _typed(d.get("friendly_name"), str, f"{path}.friendly_name")
    return Entity(entity_id, domain, room, name, facts, dynamic)


def _as_domain(domain: str, path: str) -> Domain:
    for known in DOMAINS:
        if known == domain:
            return known
    raise ScenarioError(f"{path}: unknown domain {domain[:60]!r}")


def _change(doc: object, path: str) -> StateChange:
    row = _list(doc, path)
    if len(row) != 4:
        raise ScenarioError(f"{path}: expected [ts_s, entity_id, state, attributes]")
    attrs = {
        _typed(k, str, f"{path}[3]"): _attr_value(v, f"{path}[3].{str(k)[:60]}")
        for k, v in _dict(row[3], f"{path}[3]").items()
    }
    return StateChange(
        _number(row[0], f"{path}[0]"), _typed(row[1], str, f"{path}[1]"), _typed(row[2], str, path), attrs
    )


def _fact_value(value: object, path: str) -> FactValue:
    if isinstance(value, list):
        return tuple(_typed(v, str, path) for v in value)
    if isinstance(value, str | int | float):
        return _finite(value, path)
    raise ScenarioError(f"{path}: expected a string, number, boolean or list of strings")


def _attr_value(value: object, path: str) -> AttrValue:
    if value is None:
        return None
    if isinstance(value, list):
        return tuple(_scalar(v, path) for v in value)
    if isinstance(value, str | int | float):
        return _finite(value, path)
    raise ScenarioError(f"{path}: expected a JSON scalar or a list of scalars")


def _scalar(value: object, path: str) -> str | int | float | bool | None:
    if value is None or isinstance(value, str | int | float):
        return value if not isinstance(value, float) else _finite(value, path)
    raise ScenarioError(f"{path}: list items must be JSON scalars")


def _finite(value: str | int | float, path: str) -> str | int | float:
    if isinstance(value, float) and not math.isfinite(value):
        raise ScenarioError(f"{path}: number must be finite")
    return value


def _number(value: object, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(f"{path}: expected a number")
    return float(_finite(value, path))


def _dict(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{path}: expected an object")
    return value


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ScenarioError(f"{path}: expected a list")
    return value


def _typed(value: object, kind: type[T], path: str) -> T:
    if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)):
        return value
    raise ScenarioError(f"{path}: expected {kind.__name__}")
