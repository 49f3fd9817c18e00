"""The scenario data model: homes, their entities and static facts, and the dynamic state trace.

The paper splits a twin's knowledge into a *static* state S_s (facts that change rarely: what a
device is, its ranges, the owner's preferences) and a *dynamic* state S_d (readings and on/off
changes). The model keeps them apart so the edge can train its adapter on the first and compress
the second into prompts. Every fact carries a sensitivity flag because some of them (door code,
owner name, presence schedule) must never leave the device; a leak scan greps for
``Scenario.sensitive_values()``.

Everything here is an immutable value: a scenario generated from a seed is a pure function of the
seed, so equality and the canonical JSON form (``to_json``) are meaningful.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final, Literal

from shared.errors import ScenarioError

Domain = Literal["light", "climate", "lock", "binary_sensor", "sensor", "switch", "cover", "media_player"]
DOMAINS: Final[tuple[Domain, ...]] = (
    "light",
    "climate",
    "lock",
    "binary_sensor",
    "sensor",
    "switch",
    "cover",
    "media_player",
)

Sensitivity = Literal["public", "sensitive"]
"""``sensitive`` facts are device-local configuration: they never leave the edge."""

Scalar = str | int | float | bool | None
FactValue = str | int | float | bool | tuple[str, ...]
AttrValue = Scalar | tuple[Scalar, ...]
"""A Home Assistant attribute value: a JSON scalar or a list of scalars (held as a tuple)."""

DEFAULT_START_ISO: Final = "2026-06-01T00:00:00+00:00"


@dataclass(frozen=True, slots=True)
class StaticFact:
    """One static state record: a fact about an entity (or the home) that changes rarely."""

    entity_id: str
    attribute: str
    value: FactValue
    sensitive: bool = False

    @property
    def sensitivity(self) -> Sensitivity:
        return "sensitive" if self.sensitive else "public"

    def rendered(self) -> str:
        """The value as text, the form a prompt or a leak scan sees it in."""
        return render_value(self.value)


@dataclass(frozen=True, slots=True)
class Entity:
    """A Home Assistant style entity: ``<domain>.<home>_<room>_<thing>`` plus its static facts.

    ``dynamic_attributes`` names the HA attributes that change over time besides ``state`` (which is
    always dynamic), e.g. ``("brightness",)`` for a dimmable light.
    """

    entity_id: str
    domain: Domain
    room: str
    friendly_name: str
    static: tuple[StaticFact, ...]
    dynamic_attributes: tuple[str, ...] = ()

    def fact(self, attribute: str) -> FactValue:
        """The value of one static fact; ScenarioError when the entity has no such fact."""
        for item in self.static:
            if item.attribute == attribute:
                return item.value
        raise ScenarioError(f"entity {self.entity_id!r} has no static fact {attribute!r}")

    def number(self, attribute: str) -> float:
        """A numeric fact as float (ScenarioError if it is not a number)."""
        value = self.fact(attribute)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(f"fact {attribute!r} of {self.entity_id!r} is not a number")
        return float(value)

    def integer(self, attribute: str) -> int:
        value = self.fact(attribute)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(f"fact {attribute!r} of {self.entity_id!r} is not an integer")
        return value

    def text(self, attribute: str) -> str:
        value = self.fact(attribute)
        if not isinstance(value, str):
            raise ScenarioError(f"fact {attribute!r} of {self.entity_id!r} is not a string")
        return value

    def strings(self, attribute: str) -> tuple[str, ...]:
        value = self.fact(attribute)
        if not isinstance(value, tuple):
            raise ScenarioError(f"fact {attribute!r} of {self.entity_id!r} is not a list")
        return value

    def public_facts(self) -> dict[str, FactValue]:
        return {f.attribute: f.value for f in self.static if not f.sensitive}


@dataclass(frozen=True, slots=True)
class Home:
    """One household: its rooms and entities, where it is, and which sharing group it belongs to.

    Home-level facts (owner name, door code, presence schedule ...) live on the pseudo-entity
    ``sensor.<home_id>_profile`` (see ``profile``), so every static record is a ``StaticFact`` of
    some entity and a single iterator yields them all.
    """

    home_id: str
    name: str
    region: str
    group: str
    rooms: tuple[str, ...]
    entities: tuple[Entity, ...]

    @property
    def profile_id(self) -> str:
        return f"sensor.{self.home_id}_profile"

    @property
    def profile(self) -> Entity:
        for entity in self.entities:
            if entity.entity_id == self.profile_id:
                return entity
        raise ScenarioError(f"home {self.home_id!r} has no profile entity")

    def static_facts(self) -> Iterator[StaticFact]:
        for entity in self.entities:
            yield from entity.static

    def domains(self) -> set[str]:
        return {e.domain for e in self.entities}


@dataclass(frozen=True, slots=True)
class StateChange:
    """One dynamic state change, like a Home Assistant ``state_changed`` event.

    ``attributes`` holds the entity's full set of dynamic attributes after the change (``None``
    where one does not apply, e.g. ``brightness`` of a light that is off). The first change of
    every entity is at ``ts_s == 0`` and also carries its public static HA attributes
    (``friendly_name``, ``device_class`` ...), the way HA reports states at start-up. Treat the
    mapping as read-only.
    """

    ts_s: float
    entity_id: str
    state: str
    attributes: Mapping[str, AttrValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    """A generated world: homes with static facts plus a time-sorted trace of state changes.

    ``trace`` is sorted by ``(ts_s, entity_id)`` and every ``ts_s`` lies in ``[0, duration_s)``;
    times are seconds after ``start_iso`` and the households live by that clock (midnight = 0).
    """

    seed: int
    start_iso: str
    duration_s: float
    homes: tuple[Home, ...]
    trace: tuple[StateChange, ...]

    # ---- static side

    def static_facts(self) -> Iterator[StaticFact]:
        for home in self.homes:
            yield from home.static_facts()

    @property
    def n_static_records(self) -> int:
        return sum(len(e.static) for home in self.homes for e in home.entities)

    @cached_property
    def _entities(self) -> dict[str, Entity]:
        return {e.entity_id: e for home in self.homes for e in home.entities}

    @cached_property
    def _home_of(self) -> dict[str, Home]:
        return {e.entity_id: home for home in self.homes for e in home.entities}

    def entity(self, entity_id: str) -> Entity:
        try:
            return self._entities[entity_id]
        except KeyError:
            raise ScenarioError(f"unknown entity {entity_id[:60]!r}") from None

    def home(self, home_id: str) -> Home:
        for home in self.homes:
            if home.home_id == home_id:
                return home
        raise ScenarioError(f"unknown home {home_id[:60]!r}")

    def home_of(self, entity_id: str) -> Home:
        try:
            return self._home_of[entity_id]
        except KeyError:
            raise ScenarioError(f"unknown entity {entity_id[:60]!r}") from None

    def entities(self) -> Iterator[Entity]:
        for home in self.homes:
            yield from home.entities

    def sensitive_values(self) -> set[str]:
        """Every sensitive fact value as text: what a leak scan looks for in outgoing bytes."""
        return {f.rendered() for f in self.static_facts() if f.sensitive}

    # ---- dynamic side

    def initial_states(self) -> dict[str, StateChange]:
        """The first change of every entity (at ts 0, with its public static HA attributes)."""
        first: dict[str, StateChange] = {}
        for change in self.trace:
            first.setdefault(change.entity_id, change)
        return first

    @cached_property
    def _trace_times(self) -> list[float]:
        return [c.ts_s for c in self.trace]

    def states_at(self, ts_s: float) -> dict[str, StateChange]:
        """The latest change of each entity at or before ``ts_s`` (the world as HA shows it)."""
        end = bisect.bisect_right(self._trace_times, ts_s)
        latest: dict[str, StateChange] = {}
        for change in self.trace[:end]:
            latest[change.entity_id] = change
        return latest

    def changes_of(self, entity_id: str) -> Iterator[StateChange]:
        return (c for c in self.trace if c.entity_id == entity_id)

    # ---- serialisation

    def to_json(self) -> bytes:
        """Canonical JSON bytes: the same seed gives the same bytes in any process."""
        from shared.scenario.jsonform import scenario_to_json

        return scenario_to_json(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Scenario:
        """Parse ``to_json`` output back; ScenarioError on anything malformed."""
        from shared.scenario.jsonform import scenario_from_json

        return scenario_from_json(data)


def render_value(value: FactValue) -> str:
    """Text form of a fact value: tuples joined with ", ", bools lowercase like JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(value)
    return str(value)


def pct_to_brightness(pct: int) -> int:
    """Percent (0-100) to HA's 0-255 ``brightness``; ``brightness_to_pct`` inverts it exactly."""
    return round(pct * 255 / 100)


def brightness_to_pct(brightness: int) -> int:
    return round(brightness * 100 / 255)
