"""Interval algebra and step functions behind the scenario trace, as tables (empty, one, many)."""

from __future__ import annotations

import pytest

from shared.scenario.timeline import Interval, StepFunction, clip, covers, intersect, merge, subtract


@pytest.mark.parametrize(
    ("given", "gap", "expected"),
    [
        ([], 0.0, []),
        ([(1.0, 2.0)], 0.0, [(1.0, 2.0)]),
        ([(3.0, 4.0), (1.0, 2.0)], 0.0, [(1.0, 2.0), (3.0, 4.0)]),
        ([(1.0, 3.0), (2.0, 4.0)], 0.0, [(1.0, 4.0)]),
        ([(1.0, 2.0), (2.0, 3.0)], 0.0, [(1.0, 3.0)]),
        ([(1.0, 2.0), (2.5, 3.0)], 1.0, [(1.0, 3.0)]),
        ([(1.0, 5.0), (2.0, 3.0)], 0.0, [(1.0, 5.0)]),
        ([(2.0, 1.0), (3.0, 3.0)], 0.0, []),
    ],
)
def test_merge(given: list[Interval], gap: float, expected: list[Interval]) -> None:
    assert merge(given, gap) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([], [(0.0, 1.0)], []),
        ([(0.0, 10.0)], [(2.0, 3.0), (5.0, 6.0)], [(2.0, 3.0), (5.0, 6.0)]),
        ([(0.0, 4.0), (6.0, 10.0)], [(3.0, 7.0)], [(3.0, 4.0), (6.0, 7.0)]),
        ([(0.0, 1.0)], [(1.0, 2.0)], []),
    ],
)
def test_intersect(a: list[Interval], b: list[Interval], expected: list[Interval]) -> None:
    assert intersect(a, b) == expected
    assert intersect(b, a) == expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([(0.0, 10.0)], [], [(0.0, 10.0)]),
        ([(0.0, 10.0)], [(2.0, 3.0), (5.0, 6.0)], [(0.0, 2.0), (3.0, 5.0), (6.0, 10.0)]),
        ([(0.0, 10.0)], [(-1.0, 11.0)], []),
        ([(0.0, 4.0), (6.0, 10.0)], [(3.0, 7.0)], [(0.0, 3.0), (7.0, 10.0)]),
    ],
)
def test_subtract(a: list[Interval], b: list[Interval], expected: list[Interval]) -> None:
    assert subtract(a, b) == expected


def test_clip_and_covers() -> None:
    assert clip([(-5.0, 2.0), (3.0, 4.0), (9.0, 20.0), (30.0, 40.0)], 0.0, 10.0) == [
        (0.0, 2.0),
        (3.0, 4.0),
        (9.0, 10.0),
    ]
    spans = [(1.0, 2.0), (5.0, 7.0)]
    assert [covers(spans, t) for t in (0.0, 1.0, 1.5, 2.0, 5.0, 6.9, 7.0, 100.0)] == [
        False,
        True,
        True,
        False,
        True,
        True,
        False,
        False,
    ]
    assert not covers([], 1.0)


def test_step_function_values_and_integral() -> None:
    empty = StepFunction.from_intervals([])
    assert empty.value_at(5.0) == 0.0 and empty.integral_to(5.0) == 0.0
    f = StepFunction.from_intervals([(0.0, 10.0, 100.0), (5.0, 15.0, 50.0)])
    assert [f.value_at(t) for t in (-1.0, 0.0, 4.9, 5.0, 10.0, 15.0)] == [0.0, 100.0, 100.0, 150.0, 50.0, 0.0]
    assert f.integral_to(-1.0) == 0.0
    assert f.integral_to(5.0) == pytest.approx(500.0)
    assert f.integral_to(10.0) == pytest.approx(1250.0)
    assert f.integral_to(100.0) == pytest.approx(1500.0)
