"""The daily data budget stretches the cadence instead of overspending."""

from __future__ import annotations

from edge.budget import DAY_S, DataBudget


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_within_budget_keeps_the_cadence() -> None:
    clock = Clock(100 * DAY_S + 6 * 3600)  # 06:00
    budget = DataBudget(1_000_000, clock)
    budget.record(200_000)  # a quarter of the day, a fifth of the budget
    assert budget.stretch() == 1.0 and budget.cadence(10.0) == 10.0


def test_overspending_stretches_and_a_new_day_resets() -> None:
    clock = Clock(100 * DAY_S + 6 * 3600)
    budget = DataBudget(1_000_000, clock)
    budget.record(500_000)  # at this pace: 2 MB by midnight
    factor = budget.stretch()
    assert 2.0 < factor < 4.0  # the remaining 500 kB must last 18 h, not 6 h
    assert budget.cadence(10.0) == 10.0 * factor
    clock.t = 101 * DAY_S + 60
    assert budget.used_today == 0 and budget.stretch() == 1.0


def test_exhausted_budget_hits_the_cap() -> None:
    clock = Clock(100 * DAY_S + 12 * 3600)
    budget = DataBudget(1000, clock, max_stretch=60.0)
    budget.record(5000)
    assert budget.stretch() == 60.0
