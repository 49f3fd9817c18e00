"""The semantic compressor: the dynamic state, turned into short prompts of what changed.

Each tick compares the current state with what the gateway *holds* — the state it rebuilt from the
prompts sent so far, which the compressor tracks by decoding its own output with
``shared.semantic`` — not with the last observed value. So a slow drift that never moves more than
a deadband between two ticks is still sent once it has drifted a deadband away from what the gateway
knows. Numbers are quantised (temperature to 0.1, power to 1 W ...), string states are always sent,
and sensitive attributes are dropped before anything is encoded. Keyframes (the full state) go out
every ``keyframe_every_s`` and whenever the uplink asks (:meth:`Compressor.request_keyframe`).

Everything here is pure: no I/O, no clock (``now`` is an argument), iteration in sorted order, so
the same inputs give the same bytes.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from shared.config.edge import EdgeConfig
from shared.errors import SemanticError
from shared.semantic import (
    SENSOR_QUANTITIES,
    EntityState,
    Prompt,
    Value,
    apply,
    decode_prompt,
    encode_prompt,
    format_value,
)

TickKind = Literal["key", "delta"]

# Deadbands (absolute, in the attribute's unit) where a profile names none. A profile's
# ``[state] deadbands`` overrides these key by key; a key is an attribute name or a quantity.
DEFAULT_DEADBANDS: Final[Mapping[str, float]] = {
    "temperature": 0.3, "humidity": 2.0, "brightness": 8.0, "color_temp": 10.0, "power": 15.0,
    "energy": 0.05, "illuminance": 25.0, "current_position": 5.0, "volume_level": 0.02, "battery": 5.0,
    "pressure": 1.0, "co2": 50.0,
}  # fmt: skip
# Quantisation steps: fewer digits on the wire. A step is capped at twice the deadband, so the
# value sent is always within the deadband of the value measured.
DEFAULT_QUANTUM: Final[Mapping[str, float]] = {
    "temperature": 0.1, "humidity": 1.0, "brightness": 1.0, "color_temp": 1.0, "power": 1.0,
    "energy": 0.01, "illuminance": 1.0, "current_position": 1.0, "volume_level": 0.01, "battery": 1.0,
    "pressure": 0.1, "co2": 1.0,
}  # fmt: skip
# Attributes measured in another attribute's quantity (a setpoint is a temperature).
ATTRIBUTE_QUANTITY: Final[Mapping[str, str]] = {
    "current_temperature": "temperature", "target_temp_low": "temperature",
    "target_temp_high": "temperature", "current_humidity": "humidity", "target_humidity": "humidity",
}  # fmt: skip
_NUMERIC_STATE: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?")
_EPS: Final = 1e-9


# ------------------------------------------------------------------------------------------------
# deadbands and quantisation (shared with edge.fidelity, so both judge "close enough" alike)


@dataclass(frozen=True, slots=True)
class Tolerances:
    """Deadband and quantisation step per key (an attribute name, else its quantity)."""

    deadbands: Mapping[str, float]
    quantum: Mapping[str, float]

    @classmethod
    def build(cls, deadbands: Mapping[str, float], quantum: Mapping[str, float] | None) -> Tolerances:
        """Defaults overridden by the given maps; negative or non-finite values are refused."""
        merged_d = {**DEFAULT_DEADBANDS, **deadbands}
        merged_q = {**DEFAULT_QUANTUM, **(quantum or {})}
        for name, table in (("deadband", merged_d), ("quantum", merged_q)):
            for key, value in table.items():
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"{name} for {key!r} must be a finite number >= 0, got {value!r}")
        return cls(merged_d, merged_q)

    def key(self, attribute: str) -> str:
        return attribute if attribute in self.deadbands else ATTRIBUTE_QUANTITY.get(attribute, attribute)

    def deadband(self, key: str) -> float:
        return self.deadbands.get(key, 0.0)

    def step(self, key: str) -> float:
        """The quantisation step, capped at twice the deadband (0 when the deadband is 0: exact)."""
        quantum = self.quantum.get(key, self.quantum.get(ATTRIBUTE_QUANTITY.get(key, key), 0.0))
        return min(quantum, 2 * self.deadband(key))

    def quantise(self, key: str, value: int | float) -> int | float:
        step = self.step(key)
        if step <= 0:
            return value
        digits = _decimals(step)
        snapped = round(round(value / step) * step, digits) + 0.0  # + 0.0: no "-0" on the wire
        return int(snapped) if digits == 0 else snapped

    def within(self, key: str, a: float, b: float) -> bool:
        """``|a - b|`` at most the deadband (exactly at the deadband counts as within)."""
        return abs(a - b) <= self.deadband(key) + _EPS * max(1.0, abs(a), abs(b))

    def format_state(self, key: str, value: float) -> str:
        """A numeric state quantised and written with the step's decimals (``21.3``, ``32074.61``)."""
        step = self.step(key)
        if step <= 0:
            return format_value(value)
        return f"{self.quantise(key, value):.{_decimals(step)}f}"


@functools.lru_cache(maxsize=256)
def _decimals(step: float) -> int:
    exponent = Decimal(repr(step)).normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def state_quantity(entity: EntityState) -> str | None:
    """The quantity a ``sensor.*`` entity's numeric state measures, from device_class or the id suffix.

    ``sensor.home1_living_room_temperature`` → ``temperature``. None for other domains, for
    non-numeric states and for sensors whose quantity is unknown (those are compared exactly).
    """
    if not entity.entity_id.startswith("sensor.") or entity.state is None:
        return None
    if _NUMERIC_STATE.fullmatch(entity.state) is None:
        return None
    for name, value in entity.attributes:
        if name == "device_class" and isinstance(value, str) and value in SENSOR_QUANTITIES:
            return value
    return _quantity_of_id(entity.entity_id)


@functools.lru_cache(maxsize=4096)
def _quantity_of_id(entity_id: str) -> str | None:
    obj = entity_id.partition(".")[2]
    for quantity in SENSOR_QUANTITIES:
        if obj == quantity or obj.endswith("_" + quantity):
            return quantity
    return None


def as_number(value: Value) -> int | float | None:
    """The value as a number if it is a finite one (bools are flags, not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


# ------------------------------------------------------------------------------------------------
# the compressor


@dataclass(frozen=True, slots=True)
class Tick:
    """One prompt to upload: ``kind`` as StateUpload.kind, ``text`` in the shared prompt format."""

    ts: float
    kind: TickKind
    text: str
    changed: int  # entity records in the prompt (for a keyframe: every entity)


@dataclass(frozen=True, slots=True)
class CompressorSettings:
    """The compressor's knobs, as a profile sets them (deadbands override DEFAULT_DEADBANDS)."""

    deadbands: Mapping[str, float] = field(default_factory=dict)
    keyframe_every_s: float = 3600.0
    sensitive: frozenset[str] = frozenset()
    quantum: Mapping[str, float] | None = None

    @classmethod
    def from_config(cls, config: EdgeConfig, sensitive: frozenset[str] = frozenset()) -> CompressorSettings:
        """From a device profile; ``sensitive`` adds names the state store marked (scenario facts)."""
        return cls(
            deadbands=dict(config.state.deadbands),
            keyframe_every_s=config.sampling.keyframe_every_s,
            sensitive=frozenset(config.state.sensitive_attributes) | sensitive,
        )


class Compressor:
    """Turns successive states into keyframe / delta prompts; tracks what the gateway holds."""

    def __init__(
        self,
        twin_id: str,
        deadbands: Mapping[str, float],
        keyframe_every_s: float,
        sensitive: set[str] | frozenset[str],
        quantum: Mapping[str, float] | None = None,
    ) -> None:
        if not math.isfinite(keyframe_every_s) or keyframe_every_s <= 0:
            raise ValueError(f"keyframe_every_s must be > 0, got {keyframe_every_s!r}")
        self.twin_id = twin_id
        self.tolerances = Tolerances.build(deadbands, quantum)
        self.keyframe_every_s = keyframe_every_s
        self.sensitive = frozenset(sensitive)
        self._sent: dict[str, EntityState] = {}  # what the gateway holds, decoded from our own prompts
        self._next_key: float | None = None  # None: the next tick is a keyframe
        self._encodable: dict[str, bool] = {}
        self._quiet: dict[str, tuple[EntityState, EntityState | None]] = {}  # input, gateway copy

    @classmethod
    def from_settings(cls, twin_id: str, settings: CompressorSettings) -> Compressor:
        return cls(
            twin_id, settings.deadbands, settings.keyframe_every_s, settings.sensitive, settings.quantum
        )

    @property
    def gateway_state(self) -> Mapping[str, EntityState]:
        """The state the gateway rebuilds from every prompt this compressor has produced."""
        return self._sent

    @property
    def unencodable(self) -> frozenset[str]:
        """Entity ids the prompt format cannot carry (unknown domain): skipped, for the daemon to log."""
        return frozenset(e for e, ok in self._encodable.items() if not ok)

    def request_keyframe(self) -> None:
        """The next tick sends the full state (the gateway lost data, or deltas were dropped)."""
        self._next_key = None

    def tick(self, now: float, current: Mapping[str, EntityState]) -> Tick | None:
        """The prompt for this tick, or None when nothing moved beyond its deadband."""
        ids = [e for e in sorted(current) if self._can_encode(e)]
        if self._next_key is None or now >= self._next_key - _EPS:
            return self._keyframe(now, [self._clean(current[e]) for e in ids])
        records: list[EntityState] = []
        for entity_id in ids:
            records += self._judge(current[entity_id])
        gone = [e for e in sorted(self._sent) if e not in current and self._sent[e].state is not None]
        records += [EntityState(e, None) for e in gone]
        if not records:
            return None
        text = encode_prompt("D", records, self.twin_id)
        self._sent = apply(self._sent, decode_prompt(text, self.twin_id))
        return Tick(now, "delta", text, len({r.entity_id for r in records}))

    def _judge(self, state: EntityState) -> list[EntityState]:
        """``_delta_records``, skipped when neither the input nor the gateway's copy moved since the
        last "nothing to send" (the common case: most entities are still between two ticks)."""
        sent = self._sent.get(state.entity_id)
        quiet = self._quiet.get(state.entity_id)
        if quiet is not None and quiet[1] is sent and (quiet[0] is state or quiet[0] == state):
            return []
        records = self._delta_records(self._clean(state))
        if records:
            self._quiet.pop(state.entity_id, None)
        else:
            self._quiet[state.entity_id] = (state, sent)
        return records

    # ---- internals -----------------------------------------------------------------------------

    def _keyframe(self, now: float, states: list[EntityState]) -> Tick:
        records = [self._full_record(s) for s in states]
        text = encode_prompt("K", records, self.twin_id)
        self._sent = apply({}, decode_prompt(text, self.twin_id))
        self._next_key = now + self.keyframe_every_s
        return Tick(now, "key", text, len(records))

    def _can_encode(self, entity_id: str) -> bool:
        ok = self._encodable.get(entity_id)
        if ok is None:
            try:
                encode_prompt("D", [EntityState(entity_id, None)], self.twin_id)
                ok = True
            except SemanticError:
                ok = False
            self._encodable[entity_id] = ok
        return ok

    def _clean(self, state: EntityState) -> EntityState:
        """Sensitive attributes and values a prompt cannot carry (None, NaN) removed."""
        attrs = tuple(
            (k, v)
            for k, v in sorted(state.attributes)
            if k not in self.sensitive and v is not None and (not isinstance(v, float) or math.isfinite(v))
        )
        return EntityState(state.entity_id, state.state, attrs if state.state is not None else ())

    def _full_record(self, state: EntityState) -> EntityState:
        """The entity as a prompt writes it: numeric state and attributes quantised."""
        if state.state is None:
            return state
        attrs = tuple((k, self._quantised(k, v)) for k, v in state.attributes)
        return EntityState(state.entity_id, self._state_text(state), attrs)

    def _state_text(self, state: EntityState) -> str | None:
        quantity = state_quantity(state)
        if quantity is None or state.state is None:
            return state.state
        return self.tolerances.format_state(quantity, float(state.state))

    def _quantised(self, name: str, value: Value) -> Value:
        number = as_number(value)
        return value if number is None else self.tolerances.quantise(self.tolerances.key(name), number)

    def _delta_records(self, state: EntityState) -> list[EntityState]:
        """Zero, one or two records (a reset ``~`` first when an attribute disappeared)."""
        sent = self._sent.get(state.entity_id)
        if state.state is None:
            return [] if sent is not None and sent.state is None else [state]
        full = self._full_record(state)
        if sent is None or sent.state is None:
            return [full]
        held = sent.attrs()
        if any(k not in state.attrs() for k in held):
            # the format has no "attribute cleared": drop the entity, then send it whole (one prompt)
            return [EntityState(state.entity_id, None), full]
        if not self._moved(state, full, sent):
            return []
        # the record is going out anyway: carry every attribute whose wire text changed
        attrs = tuple((k, v) for k, v in full.attributes if k not in held or _text(held[k]) != _text(v))
        return [EntityState(state.entity_id, full.state, attrs)]

    def _moved(self, state: EntityState, full: EntityState, sent: EntityState) -> bool:
        """Did the state or an attribute move beyond its deadband from what the gateway holds?

        ``state`` has the measured values, ``full`` the same as they would be sent (quantised); a
        move that would not change the wire text is no move, so nothing is sent twice.
        """
        measured, held = state.state or "", sent.state or ""
        if full.state != held:
            quantity = state_quantity(state)
            if quantity is None or _NUMERIC_STATE.fullmatch(held) is None:
                return True  # a string state: always sent
            if self._differs(quantity, float(measured), float(held)):
                return True
        held_attrs, wire = sent.attrs(), full.attrs()
        for name, value in state.attributes:
            if name not in held_attrs:
                return True
            if _text(wire[name]) != _text(held_attrs[name]) and self._differs(
                self.tolerances.key(name), value, held_attrs[name]
            ):
                return True
        return False

    def _differs(self, key: str, measured: Value, held: Value) -> bool:
        """Numbers: beyond the deadband. Anything else: not equal."""
        a, b = as_number(measured), as_number(held)
        if a is None or b is None:
            return _text(measured) != _text(held)
        return not self.tolerances.within(key, a, b)


def _text(value: Value) -> str:
    return format_value(value)


# ------------------------------------------------------------------------------------------------
# coalescing (the uplink, after a long time offline)


def coalesce(texts: Sequence[str], twin_id: str) -> str:
    """Several prompts, oldest first, as one with the same effect on the gateway's state.

    With a keyframe among them, the result is a keyframe: the last one with the later deltas folded
    in. Otherwise it is one delta; an entity that was reset (``~``) on the way keeps that reset, so
    attributes it lost stay lost. SemanticError if a text is not a prompt.
    """
    if not texts:
        raise SemanticError("nothing to coalesce")
    prompts = [decode_prompt(t, twin_id) for t in texts]
    keys = [i for i, p in enumerate(prompts) if p.kind == "K"]
    if keys:
        state: dict[str, EntityState] = {}
        for prompt in prompts[keys[-1] :]:
            state = apply(state, prompt)
        return encode_prompt("K", [state[e] for e in sorted(state)], twin_id)
    folded: dict[str, list[EntityState]] = {}
    for prompt in prompts:
        for record in prompt.states:
            folded[record.entity_id] = _compose(folded.get(record.entity_id), record)
    return encode_prompt("D", [r for e in sorted(folded) for r in folded[e]], twin_id)


def _compose(before: list[EntityState] | None, record: EntityState) -> list[EntityState]:
    """The records that do what ``before`` then ``record`` do, to any prior state."""
    if record.state is None or before is None:
        return [record]
    last = before[-1]
    if last.state is None:
        return [*before, record]
    merged = apply({last.entity_id: last}, Prompt("D", (record,)))[record.entity_id]
    return [*before[:-1], merged]
