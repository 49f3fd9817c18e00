"""Slowly varying physical quantities: daylight, weather, room temperature and humidity.

Sensors sample these continuous curves at their own update interval and report only when the
value changes at the reported precision, as Home Assistant integrations do. The curves are smooth
(daily sine plus first-order lag plus AR(1) noise) so consecutive readings look like a real
sensor's and the compressor downstream has something realistic to compress.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Final

from shared.scenario.activity import Activity
from shared.scenario.routine import DAY_S, HOUR_S
from shared.scenario.timeline import StepFunction

_GRID_S: Final = 60.0
_CLOUD_GRID_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class Series:
    """Values on a regular grid starting at 0; ``at`` interpolates linearly between points."""

    step_s: float
    values: tuple[float, ...]

    def at(self, t: float) -> float:
        pos = max(t, 0.0) / self.step_s
        idx = min(int(pos), len(self.values) - 2)
        frac = min(pos - idx, 1.0)
        return self.values[idx] + (self.values[idx + 1] - self.values[idx]) * frac


def ar_noise(rng: random.Random, n: int, phi: float, sigma: float) -> list[float]:
    """An AR(1) sequence: correlated noise that wanders instead of jumping."""
    out, x = [], 0.0
    for _ in range(n):
        x = phi * x + rng.gauss(0.0, sigma)
        out.append(x)
    return out


def daylight(t: float, sunrise_s: float, sunset_s: float) -> float:
    """Sun height as a 0..1 fraction of the day's maximum (0 at night)."""
    tod = t % DAY_S
    if not sunrise_s < tod < sunset_s:
        return 0.0
    return math.sin(math.pi * (tod - sunrise_s) / (sunset_s - sunrise_s))


def _grid(duration_s: float, step_s: float) -> int:
    return int(duration_s // step_s) + 2


@dataclass(frozen=True, slots=True)
class Weather:
    """Outdoor conditions for one home: cloud cover factor, temperature and peak daylight."""

    cloud: Series
    outdoor_temp: Series
    peak_lux: float
    sunrise_s: float
    sunset_s: float

    @classmethod
    def draw(cls, activity: Activity, rng: random.Random) -> Weather:
        n_cloud = _grid(activity.duration_s, _CLOUD_GRID_S)
        base = rng.uniform(0.55, 0.95)
        cloud = [min(1.0, max(0.15, base + x)) for x in ar_noise(rng, n_cloud, 0.9, 0.06)]
        n = _grid(activity.duration_s, _GRID_S)
        mean, swing = rng.uniform(14.0, 19.0), rng.uniform(4.0, 7.0)
        noise = ar_noise(rng, n, 0.98, 0.05)
        temps = [mean + swing * _daily_wave(k * _GRID_S) + noise[k] for k in range(n)]
        return cls(
            Series(_CLOUD_GRID_S, tuple(cloud)),
            Series(_GRID_S, tuple(temps)),
            rng.uniform(60_000.0, 100_000.0),
            activity.sunrise_s,
            activity.sunset_s,
        )

    def lux(self, t: float) -> float:
        light = daylight(t, self.sunrise_s, self.sunset_s)
        return self.peak_lux * math.pow(light, 1.4) * self.cloud.at(t) if light > 0.0 else 0.0


def _daily_wave(t: float) -> float:
    """-1 at 03:00, +1 at 15:00: the shape of a day's temperature."""
    return math.sin(2.0 * math.pi * (t - 9.0 * HOUR_S) / DAY_S)


def room_temperature(
    room: str, weather: Weather, target: StepFunction | None, duration_s: float, rng: random.Random
) -> tuple[Series, Series]:
    """Indoor temperature on a 60 s grid, and when the heating runs (1.0) or idles (0.0).

    The room drifts with the day; when its natural temperature is below the thermostat's target the
    heating lifts it there (first-order lag, tau 30 min). AR(1) noise adds sensor-scale wander.
    The garden is the weather itself.
    """
    n = _grid(duration_s, _GRID_S)
    if room == "garden":
        return weather.outdoor_temp, Series(_GRID_S, (0.0,) * n)
    base = rng.uniform(20.0, 22.0) + (0.6 if room == "bathroom" else 0.0) - (1.5 if room == "garage" else 0.0)
    swing = rng.uniform(0.8, 1.6)
    noise = ar_noise(rng, n, 0.95, 0.03)
    alpha = 1.0 - math.exp(-_GRID_S / 1800.0)
    temp = base - swing
    values: list[float] = []
    heating: list[float] = []
    for k in range(n):
        t = k * _GRID_S
        natural = base + swing * _daily_wave(t) + 0.05 * (weather.outdoor_temp.at(t) - 16.0)
        setpoint = target.value_at(t) if target is not None else natural
        heat = setpoint - 0.2 > natural
        temp += (max(natural, setpoint - 0.2) - temp) * alpha
        values.append(temp + noise[k])
        heating.append(1.0 if heat else 0.0)
    return Series(_GRID_S, tuple(values)), Series(_GRID_S, tuple(heating))


def humidity(
    room: str, temperature: Series, bumps: list[tuple[float, float]], duration_s: float, rng: random.Random
) -> Series:
    """Relative humidity: inversely tied to temperature, with decaying bumps (showers, cooking).

    ``bumps`` is (start time, height in %) - a shower adds ~30 % that decays over ~20 minutes.
    """
    n = _grid(duration_s, _GRID_S)
    outdoor = room == "garden"
    base = rng.uniform(55.0, 70.0) if outdoor else rng.uniform(42.0, 52.0)
    slope = 2.5 if outdoor else 1.2
    noise = ar_noise(rng, n, 0.97, 0.25)
    values: list[float] = []
    for k in range(n):
        t = k * _GRID_S
        value = base - slope * (temperature.at(t) - (16.0 if outdoor else 21.0)) + noise[k]
        value += sum(h * math.exp(-(t - s) / 1200.0) for s, h in bumps if s <= t < s + 3 * HOUR_S)
        values.append(min(99.0, max(20.0, value)))
    return Series(_GRID_S, tuple(values))
