"""A household's daily routine: when people wake, leave, come back and go to bed.

The routine is drawn once per home; it is rendered into the (sensitive) ``presence_schedule`` fact
and it drives the dynamic trace (lights, doors, locks, heating setback), so the twin's static
knowledge and the data it sees agree. Each simulated day jitters the routine a little so days are
not copies of each other.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

DAY_S: Final = 86400.0
HOUR_S: Final = 3600.0
_WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True, slots=True)
class Routine:
    """Times of day in seconds after midnight; ``home_office_days`` are weekday numbers (Mon = 0)."""

    wake_s: float
    leave_s: float
    return_s: float
    sleep_s: float
    weekend_wake_s: float
    weekend_out: tuple[float, float]
    home_office_days: tuple[int, ...]
    occupants: int

    def describe(self) -> str:
        """The presence schedule as the owner would write it (a sensitive fact)."""
        office = ""
        if self.home_office_days:
            days = ", ".join(_WEEKDAYS[d] for d in self.home_office_days)
            office = f" except {days} (home office)"
        out_from, out_to = self.weekend_out
        return (
            f"weekdays away {_hhmm(self.leave_s)}-{_hhmm(self.return_s)}{office}; "
            f"weekends out {_hhmm(out_from)}-{_hhmm(out_to)}; "
            f"wake {_hhmm(self.wake_s)} (weekends {_hhmm(self.weekend_wake_s)}); sleep {_hhmm(self.sleep_s)}"
        )


@dataclass(frozen=True, slots=True)
class DayPlan:
    """One simulated day in absolute scenario seconds."""

    day: int
    start_s: float
    wake_s: float
    sleep_s: float
    away: tuple[tuple[float, float], ...]
    home_office: bool
    weekend: bool


def draw_routine(rng: random.Random) -> Routine:
    """A plausible working household: up 06:00-07:30, out ~08:00-17:30, asleep 22:00-23:45."""
    wake = _minutes(rng, 6 * 60, 7 * 60 + 30)
    leave = wake + _minutes(rng, 45, 90)
    back = _minutes(rng, 16 * 60 + 30, 18 * 60 + 45)
    sleep = _minutes(rng, 22 * 60, 23 * 60 + 45)
    weekend_wake = wake + _minutes(rng, 30, 120)
    out_from = _minutes(rng, 10 * 60, 14 * 60)
    out_to = out_from + _minutes(rng, 90, 240)
    n_office = rng.choice((0, 0, 1, 2))
    office = tuple(sorted(rng.sample(range(5), n_office)))
    occupants = rng.choice((1, 2, 2, 3, 4))
    return Routine(wake, leave, back, sleep, weekend_wake, (out_from, out_to), office, occupants)


def day_plans(routine: Routine, duration_s: float, first_weekday: int, rng: random.Random) -> list[DayPlan]:
    """One plan per (partial) day of the scenario, with +-15 min jitter on every transition."""
    plans: list[DayPlan] = []
    day = 0
    while day * DAY_S < duration_s:
        start = day * DAY_S
        weekday = (first_weekday + day) % 7
        office = weekday in routine.home_office_days
        away: tuple[tuple[float, float], ...]
        if weekday >= 5:
            wake = routine.weekend_wake_s
            out_from, out_to = routine.weekend_out
            away = ((start + _jitter(rng, out_from), start + _jitter(rng, out_to)),)
        else:
            wake = routine.wake_s
            leave, back = _jitter(rng, routine.leave_s), _jitter(rng, routine.return_s)
            away = () if office else ((start + leave, start + back),)
        wake_s, sleep_s = start + _jitter(rng, wake), start + _jitter(rng, routine.sleep_s)
        plans.append(DayPlan(day, start, wake_s, sleep_s, away, office, weekday >= 5))
        day += 1
    return plans


def _minutes(rng: random.Random, low: int, high: int) -> float:
    """A time on a 5-minute grid between two minute marks, in seconds."""
    return float(rng.randrange(low, high + 1, 5) * 60)


def _jitter(rng: random.Random, t: float) -> float:
    return round(t + rng.uniform(-900.0, 900.0), 3)


def _hhmm(t: float) -> str:
    minutes = int(t // 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
