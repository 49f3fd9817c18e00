"""Parsing the command's time and grouping arguments, and formatting times and byte counts."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime

GROUP_KEYS = ("tenant", "twin", "side", "type", "dir")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h``, ``1d`` → seconds (> 0)."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 30s, 10m, 1h, 1d)")
    seconds = float(match.group(1)) * _UNIT_S[match.group(2) or "s"]
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError(f"{text!r}: a duration must be greater than zero")
    return seconds


def parse_since(text: str, *, now: float | None = None) -> float:
    """A point in time: epoch seconds (``1780000000``), ISO 8601 (naive means UTC), or a duration
    with a unit before now (``2h``: the last two hours)."""
    stripped = text.strip()
    try:
        value = float(stripped)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite timestamp")
        return value
    if _DURATION.match(stripped) and stripped[-1:].isalpha():
        return (time.time() if now is None else now) - parse_duration(stripped)
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (epoch seconds, ISO 8601 such as 2026-11-29T18:00:00Z, or a duration ago: 2h)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse_by(text: str) -> tuple[str, ...]:
    """``tenant,type,dir`` → the grouping keys, in order, each known and given once."""
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise ValueError("give at least one of " + ", ".join(GROUP_KEYS))
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown:
        raise ValueError(f"unknown grouping key {unknown[0]!r} (known: {', '.join(GROUP_KEYS)})")
    if len(set(keys)) != len(keys):
        raise ValueError(f"a grouping key is repeated in {text!r}")
    return keys


def format_ts(ts: float) -> str:
    """Epoch seconds → ``2026-11-29 18:00:00`` (UTC)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def format_duration(seconds: float) -> str:
    """A span for humans: ``45 s``, ``12.5 min``, ``3.25 h``, ``2.1 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 86400:.1f} d"


def format_window(seconds: float) -> str:
    """A window length as given: ``10m``, ``1h``, ``90s``."""
    for unit in ("d", "h", "m"):
        n = seconds / _UNIT_S[unit]
        if n >= 1 and n == int(n):
            return f"{int(n)}{unit}"
    return f"{seconds:g}s"


def format_ratio(value: float | None) -> str:
    """A relative difference as a signed percentage, ``-`` when undefined."""
    return "-" if value is None else f"{value * 100:+.2f}%"
