"""The cumulative bytes-on-the-wire plot (``--plot out.png``): one line per message type, the
total, and optional baselines (:mod:`shared.bandwidth.baselines`), dashed.

matplotlib (the ``plot`` extra) is imported only when a plot is drawn, and only through its
object API with the Agg canvas: no pyplot, no global backend switch. The y axis turns logarithmic
when the lines' final values are more than 100x apart (a baseline far above the logged traffic),
so both stay readable. Lines of more than :data:`MAX_POINTS` points are thinned for drawing.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from shared.bandwidth.baselines import Baseline
from shared.bandwidth.records import MessageRecord
from shared.bandwidth.units import format_ts

MAX_POINTS = 4000
LOG_SCALE_RATIO = 100.0
RATE_STEPS = 200  # a constant-rate baseline is drawn through this many segments (readable on a log axis)


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


class WireSeries:
    """(ts, frame bytes) of every counted message, per message type."""

    def __init__(self) -> None:
        self._points: defaultdict[str, list[tuple[float, int]]] = defaultdict(list)

    def add(self, rec: MessageRecord) -> None:
        self._points[rec.type].append((rec.ts, rec.frame))

    def __len__(self) -> int:
        return sum(len(p) for p in self._points.values())

    def cumulative(self) -> dict[str, tuple[list[float], list[int]]]:
        """Per type and for ``total``: timestamps (sorted) and cumulative frame bytes."""
        out: dict[str, tuple[list[float], list[int]]] = {}
        every: list[tuple[float, int]] = []
        for kind in sorted(self._points):
            points = sorted(self._points[kind])
            every += points
            out[kind] = _accumulate(points)
        if len(out) > 1:
            out["total"] = _accumulate(sorted(every))
        return out


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'llm-twin[plot]'") from None


def render_png(series: WireSeries, baselines: list[Baseline], out: Path, *, title: str = "") -> None:
    """Draw the plot and write it as a PNG (raises PlotUnavailable, OSError)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    lines = series.cumulative()
    starts = [ts[0] for ts, _ in lines.values() if ts] + [b.points[0][0] for b in baselines if b.points]
    t0 = min(starts, default=0.0)
    logged = [ts for ts, _ in lines.values() if ts]
    t_first = min((t[0] for t in logged), default=t0)
    t_last = max((t[-1] for t in logged), default=t0)

    fig = Figure(figsize=(10, 6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    finals: list[float] = []
    for kind, (ts, cum) in lines.items():
        xs, ys = _thin([(t - t0) / 3600 for t in ts], cum)
        width = 2.2 if kind == "total" else 1.3
        ax.plot(xs, ys, drawstyle="steps-post", linewidth=width, label=f"{kind} ({cum[-1]:,d} B)")
        finals.append(cum[-1])
    for base in baselines:
        if base.points:
            bx = [(t - t0) / 3600 for t, _ in base.points]
            by = [v for _, v in base.points]
        else:
            rate = base.bytes_per_s or 0.0
            steps = [t_first + (t_last - t_first) * i / RATE_STEPS for i in range(RATE_STEPS + 1)]
            bx = [(t - t0) / 3600 for t in steps]
            by = [rate * (t - t_first) for t in steps]
        ax.plot(bx, by, linestyle="--", linewidth=1.5, label=f"{base.name} ({by[-1]:,.0f} B)")
        finals.append(by[-1])
    positive = [v for v in finals if v > 0]
    if positive and max(positive) / min(positive) > LOG_SCALE_RATIO:
        ax.set_yscale("log")
        bottom = min(positive) / 10
        ax.set_ylim(bottom=bottom)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _human_bytes(v)))
    ax.set_xlabel(f"hours since {format_ts(t0)} UTC")
    ax.set_ylabel("cumulative bytes on the wire (frame)")
    ax.set_title(title or "bytes on the wire, cumulative, per message type")
    ax.grid(True, alpha=0.3)
    if finals:
        ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")


def _accumulate(points: list[tuple[float, int]]) -> tuple[list[float], list[int]]:
    ts: list[float] = []
    cum: list[int] = []
    running = 0
    for t, n in points:
        running += n
        ts.append(t)
        cum.append(running)
    return ts, cum


def _thin(xs: list[float], ys: list[int]) -> tuple[list[float], list[int]]:
    if len(xs) <= MAX_POINTS:
        return xs, ys
    step = len(xs) / (MAX_POINTS - 1)
    idx = sorted({min(len(xs) - 1, round(i * step)) for i in range(MAX_POINTS)} | {len(xs) - 1})
    return [xs[i] for i in idx], [ys[i] for i in idx]


def _human_bytes(value: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:g} {unit}"
    return f"{value:g} B"
