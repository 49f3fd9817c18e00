"""The strict plain-data → dataclass converter shared by the codec and the config loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import pytest

from shared.typed import FieldError, Length, Pattern, Range, from_plain, to_plain


@dataclass(frozen=True, slots=True)
class Inner:
    name: Annotated[str, Length(1, 8), Pattern(r"[a-z]+")]
    weight: Annotated[float, Range(0, 10)] = 1.0


@dataclass(frozen=True, slots=True)
class Cat:
    type: Literal["cat"]
    lives: Annotated[int, Range(0, 9)] = 9


@dataclass(frozen=True, slots=True)
class Dog:
    type: Literal["dog"]
    good: bool = True


@dataclass(frozen=True, slots=True)
class Outer:
    count: Annotated[int, Range(0, 100)]
    inner: Inner
    items: Annotated[tuple[Inner, ...], Length(0, 2)] = ()
    pets: tuple[Cat | Dog, ...] = ()
    maybe: int | None = None
    table: dict[str, int] = field(default_factory=dict)
    where: Path | None = None


def test_round_trip_and_defaults() -> None:
    plain = {"count": 3, "inner": {"name": "abc"}, "pets": [{"type": "dog"}, {"type": "cat", "lives": 2}]}
    obj = from_plain(Outer, plain)
    assert obj.inner.weight == 1.0 and obj.pets == (Dog("dog"), Cat("cat", 2))
    assert from_plain(Outer, to_plain(obj)) == obj
    assert to_plain(obj, omit_defaults=True) == {
        "count": 3,
        "inner": {"name": "abc"},
        "pets": [{"type": "dog"}, {"type": "cat", "lives": 2}],
    }


@pytest.mark.parametrize(
    ("plain", "key", "reason"),
    [
        ({"inner": {"name": "a"}}, "count", "missing required key"),
        ({"count": True, "inner": {"name": "a"}}, "count", "expected an integer, got a boolean"),
        ({"count": 101, "inner": {"name": "a"}}, "count", "out of range [0, 100]"),
        ({"count": 1, "inner": {"name": "A"}}, "inner.name", "must match"),
        ({"count": 1, "inner": {"name": "a", "weight": float("inf")}}, "inner.weight", "finite"),
        ({"count": 1, "inner": {"name": "a"}, "items": [{"name": "a"}] * 3}, "items", "length 3"),
        ({"count": 1, "inner": {"name": "a"}, "items": [{"name": 1}]}, "items[0].name", "expected a string"),
        ({"count": 1, "inner": {"name": "a"}, "pets": [{"type": "cow"}]}, "pets[0].type", "must be one of"),
        (
            {"count": 1, "inner": {"name": "a"}, "pets": [{"type": "cat", "bark": 1}]},
            "pets[0].bark",
            "unknown",
        ),
        ({"count": 1, "inner": {"name": "a"}, "table": {"x": "y"}}, "table.x", "expected an integer"),
        ({"count": 1, "inner": {"name": "a"}, "where": ""}, "where", "must not be empty"),
        ({"count": 1, "inner": "abc"}, "inner", "expected a table/map"),
    ],
)
def test_failures_name_the_key(plain: object, key: str, reason: str) -> None:
    with pytest.raises(FieldError) as info:
        from_plain(Outer, plain)
    assert info.value.key == key
    assert reason in info.value.reason


def test_unknown_key_has_a_safe_key_without_the_input() -> None:
    with pytest.raises(FieldError) as info:
        from_plain(Outer, {"count": 1, "inner": {"name": "a", "s3cret": 1}})
    assert info.value.key == "inner.s3cret"
    assert info.value.safe_key == "inner"


def test_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    obj = from_plain(Outer, {"count": 1, "inner": {"name": "a"}, "where": "x/y"}, base_dir=tmp_path)
    assert obj.where == tmp_path / "x" / "y"
    obj = from_plain(Outer, {"count": 1, "inner": {"name": "a"}, "where": "/abs"}, base_dir=tmp_path)
    assert obj.where == Path("/abs")
