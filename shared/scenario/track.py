"""Building blocks shared by the trace emitters: a per-entity change recorder and the home state.

``Track`` enforces the trace invariants (first change at 0, no repeats, strictly increasing times)
in one place so no emitter has to; ``HomeState`` is the blackboard through which actuators tell
sensors what they did (loads, light in a room, closed blinds).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from shared.scenario.activity import Activity
from shared.scenario.model import AttrValue, Entity, Home, StateChange
from shared.scenario.timeline import Interval

HA_STATIC_ATTRIBUTES: Final = frozenset(
    {
        "device_class",
        "unit_of_measurement",
        "state_class",
        "supported_color_modes",
        "min_mireds",
        "max_mireds",
        "min_temp",
        "max_temp",
        "hvac_modes",
        "target_temp_step",
        "source_list",
    }
)
"""Static facts Home Assistant itself puts into a state object's ``attributes``."""


class Track:
    """One entity's changes: the first at ts 0, then only real changes, times strictly increasing.

    Repeats of the current (state, attributes) are dropped, like HA does not fire ``state_changed``
    for an unchanged state; times are rounded to milliseconds and bumped by 1 ms if two changes
    would collide, so ``(ts_s, entity_id)`` is a unique sort key.
    """

    def __init__(
        self, entity: Entity, duration_s: float, state: str, attributes: Mapping[str, AttrValue]
    ) -> None:
        facts = entity.public_facts()
        static: dict[str, AttrValue] = {"friendly_name": entity.friendly_name}
        static.update({k: v for k, v in facts.items() if k in HA_STATIC_ATTRIBUTES})
        self.entity_id = entity.entity_id
        self.duration_s = duration_s
        self.changes = [StateChange(0.0, entity.entity_id, state, {**static, **attributes})]
        self._last: tuple[str, Mapping[str, AttrValue]] = (state, dict(attributes))
        self._last_ts = 0.0

    def set(self, ts: float, state: str, attributes: Mapping[str, AttrValue] | None = None) -> None:
        if attributes is None and state == self._last[0] and not self._last[1]:
            return  # the common case: a sensor reporting an unchanged value
        attrs = dict(attributes or {})
        if (state, attrs) == self._last:
            return
        if ts <= 0.0 and len(self.changes) == 1:
            first = self.changes[0]
            static = {k: v for k, v in first.attributes.items() if k not in self._last[1]}
            self.changes[0] = StateChange(0.0, self.entity_id, state, {**static, **attrs})
            self._last = (state, attrs)
            return
        ts = max(round(ts, 3), round(self._last_ts + 0.001, 3))
        if ts >= self.duration_s:
            return
        self.changes.append(StateChange(ts, self.entity_id, state, attrs))
        self._last = (state, attrs)
        self._last_ts = ts


@dataclass
class HomeState:
    """What the actuators did, for the sensors to measure (filled during phase one)."""

    home: Home
    activity: Activity
    seed: int
    loads: list[tuple[float, float, float]] = field(default_factory=list)
    room_lux: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    shaded: dict[str, list[Interval]] = field(default_factory=dict)
    appliance: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    garage_open: list[Interval] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.activity.duration_s

    def rng(self, key: str) -> random.Random:
        return random.Random(f"{self.seed}/{key}")

    def track(self, entity: Entity, state: str, attributes: Mapping[str, AttrValue] | None = None) -> Track:
        return Track(entity, self.duration_s, state, attributes or {})


def thing_of(entity: Entity, home_id: str) -> str:
    """The ``<thing>`` part of ``<domain>.<home>_<room>_<thing>``."""
    return entity.entity_id.split(".", 1)[1].removeprefix(f"{home_id}_{entity.room}_")
