"""A minimal Prometheus registry (text exposition format 0.0.4) for the admin servers.

Counters and gauges with labels; histograms with fixed buckets. Owned by one event loop (no locks).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

LabelValues = tuple[str, ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


@dataclass
class Metric:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    kind: str = "counter"
    values: dict[LabelValues, float] = field(default_factory=dict)

    def inc(self, *labels: str, by: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + by

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(self.labels, labels)} {_num(value)}"


@dataclass
class Histogram:
    name: str
    help: str
    buckets: tuple[float, ...]
    labels: tuple[str, ...] = ()
    counts: dict[LabelValues, list[int]] = field(default_factory=dict)
    sums: dict[LabelValues, float] = field(default_factory=dict)

    def observe(self, value: float, *labels: str) -> None:
        counts = self.counts.setdefault(labels, [0] * (len(self.buckets) + 1))
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[labels] = self.sums.get(labels, 0.0) + value

    def count(self, *labels: str) -> int:
        return self.counts.get(labels, [0])[-1]

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                le = 'le="' + _num(bound) + '"'
                yield f"{self.name}_bucket{_labels(self.labels, labels, le)} {n}"
            yield f"{self.name}_sum{_labels(self.labels, labels)} {_num(self.sums[labels])}"
            yield f"{self.name}_count{_labels(self.labels, labels)} {counts[-1]}"


M = TypeVar("M", Metric, Histogram)


class Registry:
    def __init__(self) -> None:
        self._metrics: list[Metric | Histogram] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._add(Metric(name, help, tuple(labels), "counter"))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Metric:
        return self._add(Metric(name, help, tuple(labels), "gauge"))

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> Histogram:
        return self._add(Histogram(name, help, tuple(buckets), tuple(labels)))

    def _add(self, metric: M) -> M:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"
