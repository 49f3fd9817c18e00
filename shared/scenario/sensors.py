"""Phase two of a home's trace: sensors and thermostats measure the world the actuators made.

Every sensor samples at its own ``update_interval_s`` (random phase) and reports only when the
value changes at its display precision, as a Home Assistant integration does. Energy meters
integrate exactly the loads the power meters see, so ``kWh`` is monotonic and consistent with
``W``; the thermostat's setpoint follows the owner's day / night / eco preferences.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from shared.scenario.model import AttrValue, Entity, Home, StateChange
from shared.scenario.physics import Series, Weather, daylight, humidity, room_temperature
from shared.scenario.timeline import StepFunction, covers, subtract
from shared.scenario.track import HomeState, Track, thing_of

_PRECISION: Final = {"temperature": 1, "humidity": 0, "illuminance": 0, "power": 0, "energy": 2}
_CLIMATE_PERIOD_S: Final = 120.0
_INDOOR_DAYLIGHT: Final = 0.015
_SHADED: Final = 0.1


@dataclass
class Meters:
    """Lazily built physics for one home, shared by all of its sensors."""

    st: HomeState
    weather: Weather
    _temps: dict[str, tuple[Series, Series]] = field(default_factory=dict)
    _humidity: dict[str, Series] = field(default_factory=dict)
    _loads: StepFunction | None = None

    def rng(self, key: str) -> random.Random:
        return self.st.rng(f"{self.st.home.home_id}/{key}")

    def temperature(self, room: str) -> tuple[Series, Series]:
        """(temperature, heating flag 0/1) series of a room."""
        if room not in self._temps:
            target = _room_target(self.st, room)
            rng = self.rng(f"{room}/temperature")
            self._temps[room] = room_temperature(room, self.weather, target, self.st.duration_s, rng)
        return self._temps[room]

    def humidity(self, room: str) -> Series:
        if room not in self._humidity:
            act = self.st.activity
            if room == "bathroom":
                bumps = [(p.wake_s + 600.0, 30.0) for p in act.plans if covers(act.home, p.wake_s + 600.0)]
            else:
                bumps = [(s, 6.0) for s, _ in act.blocks.get(room, [])] if room == "kitchen" else []
            temps, _ = self.temperature(room)
            self._humidity[room] = humidity(
                room, temps, bumps, self.st.duration_s, self.rng(f"{room}/humidity")
            )
        return self._humidity[room]

    @property
    def loads(self) -> StepFunction:
        """Whole-home consumption in W: always-on base, fridge cycles and every actuator's load."""
        if self._loads is None:
            rng = self.rng("base_load")
            base = [(0.0, self.st.duration_s, rng.uniform(60.0, 180.0))]
            period, on, fridge = (
                rng.uniform(1800.0, 2700.0),
                rng.uniform(600.0, 900.0),
                rng.uniform(70.0, 120.0),
            )
            t = rng.uniform(0.0, period)
            while t < self.st.duration_s:
                base.append((t, t + on, fridge))
                t += period
            self._loads = StepFunction.from_intervals(base + self.st.loads)
        return self._loads


def _room_target(st: HomeState, room: str) -> StepFunction | None:
    """Setpoint schedule of the room's thermostat: day, night setback while asleep, eco when away."""
    climate = next((e for e in st.home.entities if e.domain == "climate" and e.room == room), None)
    if climate is None:
        return None
    day = climate.number("preferred_day_temp")
    night = climate.number("preferred_night_temp")
    eco = climate.number("eco_temp")
    act = st.activity
    preheat = [(p.wake_s - 1800.0, p.wake_s) for p in act.plans]
    returning = [(e - 1800.0, e) for e in act.arrivals]
    away = subtract(subtract([(0.0, act.duration_s)], act.home), returning)
    weights = [(0.0, act.duration_s, day)]
    weights += [(s, e, night - day) for s, e in subtract(act.asleep, preheat)]
    weights += [(s, e, eco - day) for s, e in away]
    return StepFunction.from_intervals(weights)


def measure(home: Home, st: HomeState) -> list[StateChange]:
    meters = Meters(st, Weather.draw(st.activity, st.rng(f"{home.home_id}/weather")))
    changes: list[StateChange] = []
    for entity in home.entities:
        if entity.domain == "climate":
            changes += _emit_climate(entity, meters).changes
        elif entity.domain == "sensor" and entity.entity_id != home.profile_id:
            changes += _emit_sensor(entity, meters).changes
    return changes


def _emit_climate(entity: Entity, meters: Meters) -> Track:
    """A thermostat: fixed ``heat`` mode; setpoint, measured temperature and action change."""
    st = meters.st
    rng = st.rng(entity.entity_id)
    target = _room_target(st, entity.room)
    temps, heating = meters.temperature(entity.room)
    step = 0.1 if entity.number("target_temp_step") < 0.5 else 0.5

    def attrs_at(now: float) -> dict[str, AttrValue]:
        return {
            "temperature": target.value_at(now) if target is not None else None,
            "current_temperature": round(round(temps.at(now) / step) * step, 1),
            "hvac_action": "heating" if heating.at(now) > 0.5 else "idle",
        }

    track = st.track(entity, "heat", attrs_at(0.0))
    for now in _times(rng.uniform(0.0, _CLIMATE_PERIOD_S), _CLIMATE_PERIOD_S, st.duration_s):
        track.set(now, "heat", attrs_at(now))
    return track


def _times(first: float, period: float, duration_s: float) -> list[float]:
    count = int((duration_s - first) // period) + 1
    return [first + k * period for k in range(count) if first + k * period < duration_s]


def _emit_sensor(entity: Entity, meters: Meters) -> Track:
    st = meters.st
    rng = st.rng(entity.entity_id)
    kind = entity.text("device_class")
    read = _reader(entity, kind, meters, rng)
    digits = _PRECISION[kind]
    interval = entity.number("update_interval_s")
    track = st.track(entity, _fmt(read(0.0), digits))
    for now in _times(rng.uniform(0.0, interval), interval, st.duration_s):
        track.set(now, _fmt(read(now), digits))
    return track


def _fmt(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _reader(entity: Entity, kind: str, meters: Meters, rng: random.Random) -> Callable[[float], float]:
    """The function a sensor samples: its physical quantity plus sensor noise."""
    st, room = meters.st, entity.room
    thing = thing_of(entity, st.home.home_id)
    if kind == "temperature":
        offset = rng.uniform(-0.3, 0.3)
        temps = meters.temperature(room)[0]
        return lambda t: temps.at(t) + offset
    if kind == "humidity":
        series = meters.humidity(room)
        return series.at
    if kind == "illuminance":
        return _illuminance(room, meters, rng)
    if kind == "power":
        return _power(thing, meters, rng)
    return _energy(entity, thing, meters)


def _illuminance(room: str, meters: Meters, rng: random.Random) -> Callable[[float], float]:
    weather, st = meters.weather, meters.st
    if room == "garden":
        return weather.lux
    lamps = StepFunction.from_intervals(st.room_lux.get(room, []))
    shaded = st.shaded.get(room, [])

    def read(t: float) -> float:
        day = weather.lux(t) * _INDOOR_DAYLIGHT * (_SHADED if covers(shaded, t) else 1.0)
        return max(0.0, (day + lamps.value_at(t)) * (1.0 + rng.gauss(0.0, 0.02)))

    return read


def _solar(meters: Meters, peak_w: float) -> Callable[[float], float]:
    weather = meters.weather

    def produce(t: float) -> float:
        light = daylight(t, weather.sunrise_s, weather.sunset_s)
        return peak_w * math.pow(light, 1.2) * weather.cloud.at(t)

    return produce


def _power(thing: str, meters: Meters, rng: random.Random) -> Callable[[float], float]:
    if thing == "solar_power":
        produce = _solar(meters, meters.rng("solar").uniform(2500.0, 6000.0))
        return lambda t: produce(t) * (1.0 + rng.gauss(0.0, 0.01))
    if thing == "main_power":
        loads = meters.loads
        return lambda t: max(0.0, loads.value_at(t) + rng.gauss(0.0, 6.0))
    appliance = StepFunction.from_intervals(meters.st.appliance.get(thing.removesuffix("_power"), []))
    return lambda t: max(0.0, appliance.value_at(t) * (1.0 + rng.gauss(0.0, 0.02)))


def _energy(entity: Entity, thing: str, meters: Meters) -> Callable[[float], float]:
    """A kWh meter: initial reading plus the exact integral of the matching load."""
    start = entity.number("initial_reading_kwh")
    if thing == "solar_energy":
        produce = _solar(meters, meters.rng("solar").uniform(2500.0, 6000.0))
        grid = [produce(k * 60.0) * 60.0 for k in range(int(meters.st.duration_s // 60.0) + 2)]
        cumulative = Series(60.0, tuple(_running_sum([0.0, *grid[:-1]])))
        return lambda t: start + cumulative.at(t) / 3.6e6
    if thing == "main_energy":
        loads = meters.loads
    else:
        loads = StepFunction.from_intervals(meters.st.appliance.get(thing.removesuffix("_energy"), []))
    return lambda t: start + loads.integral_to(t) / 3.6e6


def _running_sum(values: list[float]) -> list[float]:
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out
