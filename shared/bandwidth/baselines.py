"""Baseline curves for the plot, read from a JSON file (``--baselines FILE.json``).

Format: an object with one key, ``baselines``, a list of curves. Each curve has a ``name`` and
either ``points``, ``[[ts, cumulative_bytes], ...]`` with ``ts`` in epoch seconds, not decreasing,
and bytes ≥ 0, or ``bytes_per_s``, a constant rate drawn from the first to the last logged record::

    {"baselines": [
        {"name": "full JSON state every 10 s", "points": [[1780000000, 0], [1780003600, 5400000]]},
        {"name": "raw sensor stream", "bytes_per_s": 1500}
    ]}

Anything else (unknown keys, wrong types, non-finite numbers) is an error naming the file and the
JSON path of the bad value (``baselines[1].points[3]``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path


class BaselineError(ValueError):
    """The baselines file is unreadable or not in the documented format."""


@dataclass(frozen=True, slots=True)
class Baseline:
    name: str
    points: tuple[tuple[float, float], ...] = ()  # (ts, cumulative bytes)
    bytes_per_s: float | None = None


def load_baselines(path: Path) -> list[Baseline]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BaselineError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    return parse_baselines(data, str(path))


def parse_baselines(data: object, source: str) -> list[Baseline]:
    def fail(where: str, reason: str) -> BaselineError:
        return BaselineError(f"{source}: {where}: {reason}")

    if not isinstance(data, dict) or set(data) != {"baselines"}:
        raise fail("top level", 'must be an object with exactly one key, "baselines"')
    items = data["baselines"]
    if not isinstance(items, list):
        raise fail("baselines", "must be a list")
    out: list[Baseline] = []
    for i, item in enumerate(items):
        where = f"baselines[{i}]"
        if not isinstance(item, dict):
            raise fail(where, "must be an object")
        unknown = set(item) - {"name", "points", "bytes_per_s"}
        if unknown:
            raise fail(where, f"unknown key {sorted(unknown)[0]!r} (known: name, points, bytes_per_s)")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise fail(f"{where}.name", "must be a non-empty string")
        if ("points" in item) == ("bytes_per_s" in item):
            raise fail(where, 'needs exactly one of "points" and "bytes_per_s"')
        if "bytes_per_s" in item:
            rate = item["bytes_per_s"]
            if not _finite(rate) or rate < 0:
                raise fail(f"{where}.bytes_per_s", "must be a finite number >= 0")
            out.append(Baseline(name, bytes_per_s=float(rate)))
            continue
        raw = item["points"]
        if not isinstance(raw, list) or not raw:
            raise fail(f"{where}.points", "must be a non-empty list of [ts, cumulative_bytes]")
        points: list[tuple[float, float]] = []
        for j, point in enumerate(raw):
            at = f"{where}.points[{j}]"
            if not isinstance(point, list) or len(point) != 2 or not all(_finite(v) for v in point):
                raise fail(at, "must be [ts, cumulative_bytes], two finite numbers")
            ts, value = float(point[0]), float(point[1])
            if value < 0:
                raise fail(at, "cumulative bytes must be >= 0")
            if points and ts < points[-1][0]:
                raise fail(at, "timestamps must not decrease")
            points.append((ts, value))
        out.append(Baseline(name, points=tuple(points)))
    return out


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
