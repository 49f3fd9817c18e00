"""The PNGs of docs/results.md, drawn from the paper bench's JSON alone (so a JSON can be re-rendered).

matplotlib through its object API and the Agg canvas (no pyplot, no global backend), as
``shared.bandwidth.plot``. A figure whose data is missing from the JSON (a partial run) is skipped.

    accuracy.png      Table 2: normal-prompt accuracy and reverse-prompt success vs prompt count, paper beside
    edge_compute.png  edge compute per update (s) and peak RSS (MB): LoRA round vs FedAvg local round
    server_compute.png  server seconds vs entities n: adapter commit + bank load vs FedAvg aggregation
    comms_bytes.png   cumulative bytes over simulated time, LLM-Twin per λ and FL-DTN per K
    update_time.png   time per DTN update: edge + transfer + server, stacked
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Doc = Mapping[str, Any]
NAMES = ("accuracy", "edge_compute", "server_compute", "comms_bytes", "update_time")


def render_all(doc: Doc, folder: Path) -> list[Path]:
    """Every figure the JSON has the data for, as ``folder/<name>.png``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, draw in _DRAWERS.items():
        if not _has(doc, name):
            continue
        path = folder / f"{name}.png"
        fig = _figure()
        draw(fig, doc)
        fig.tight_layout()
        fig.savefig(path, format="png")
        drawn.append(path)
    return drawn


def _has(doc: Doc, name: str) -> bool:
    needs = {
        "accuracy": ("normal_accuracy",),
        "edge_compute": ("edge_s_llmtwin", "edge_s_fl"),
        "server_compute": ("compute",),
        "comms_bytes": ("comms",),
        "update_time": ("time_per_update",),
    }[name]
    return all(doc.get(key) is not None for key in needs) and (name != "server_compute" or "server" in doc["compute"])


def _figure() -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def human_bytes(value: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g} {unit}"
    return f"{value:.0f} B"


def _sizes(table: Mapping[str, Any]) -> tuple[list[int], list[float | None]]:
    keys = sorted(table, key=int)
    return [int(k) for k in keys], [table[k] for k in keys]


def _accuracy(fig: Any, doc: Doc) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax = fig.add_subplot(1, 1, 1)
    paper = doc.get("paper") or {}
    low, high = paper.get("normal_accuracy_range") or (None, None)
    if low is not None and high is not None:
        band = f"paper ({paper.get('model')}), normal: {low}-{high}"
        ax.axhspan(low, high, color="tab:green", alpha=0.15, label=band)
    xs, ys = _sizes(doc["normal_accuracy"])
    ticks = set(xs)
    ax.plot(xs, [_nan(y) for y in ys], "o-", color="tab:green", label="ours, normal prompts")
    if doc.get("reverse_success"):
        rx, ry = _sizes(doc["reverse_success"])
        ticks |= set(rx)
        ax.plot(rx, [_nan(y) for y in ry], "s-", color="tab:red", label="ours, reverse prompts (attacker success)")
    if paper.get("reverse_success"):
        px, py = _sizes(paper["reverse_success"])
        ticks |= set(px)
        ax.plot(
            px,
            [_nan(y) for y in py],
            "s",
            color="tab:red",
            fillstyle="none",
            markersize=10,
            label=f"paper ({paper.get('model')}), reverse",
        )
    if doc.get("likelihood_attack_top1") is not None and doc.get("chance") is not None:
        ax.axhline(doc["likelihood_attack_top1"], color="tab:purple", linestyle=":", label="likelihood attack top-1")
        ax.axhline(doc["chance"], color="grey", linestyle="--", label="chance (likelihood attack)")
    ax.set_xscale("log")
    ax.set_xticks(sorted(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("prompts")
    ax.set_ylabel("accuracy / success rate")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"Table 2: normal vs reverse prompts ({doc.get('model', '?')})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="center right")


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _edge(fig: Any, doc: Doc) -> None:
    secs, mem = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    labels = ["LLM-Twin\nLoRA round", "FedAvg local\n(1 epoch" + (", extrap.)" if doc.get("extrapolated") else ")")]
    bars = secs.bar(labels, [doc["edge_s_llmtwin"], doc["edge_s_fl"]], color=["tab:blue", "tab:orange"])
    if doc.get("extrapolated"):
        bars[1].set_hatch("//")
    secs.bar_label(bars, fmt="%.0f s")
    secs.set_ylabel("seconds per update (edge)")
    secs.set_title("edge compute per update")
    rss = [doc.get("peak_rss_mb_llmtwin"), doc.get("peak_rss_mb_fl")]
    paper_mb = (doc.get("paper") or {}).get("edge_peak_rss_mb")
    mem_labels, mem_values = ["LLM-Twin", "FedAvg"], [v or 0.0 for v in rss]
    if paper_mb is not None:
        mem_labels.append("paper\nLLaMA-7B")
        mem_values.append(paper_mb)
    mbars = mem.bar(mem_labels, mem_values, color=["tab:blue", "tab:orange", "tab:grey"][: len(mem_values)])
    mem.bar_label(mbars, fmt="%.0f")
    mem.set_ylabel("peak RSS (MB)")
    mem.set_title("edge memory")


def _server(fig: Any, doc: Doc) -> None:
    server = doc["compute"]["server"]
    ax = fig.add_subplot(1, 1, 1)
    for key, label, color in (
        ("server_s_llmtwin_per_n", "LLM-Twin: commit + bank load", "tab:blue"),
        ("server_s_fl_per_n", "FedAvg: weighted mean of full weights", "tab:orange"),
    ):
        xs, ys = _sizes(server[key])
        ax.plot(xs, ys, "o-", color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("entities n")
    ax.set_ylabel("server seconds per update round")
    ax.set_title("server compute vs entities")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


def _comms(fig: Any, doc: Doc) -> None:
    from matplotlib.ticker import FuncFormatter

    comms = doc["comms"]
    hours, series = comms["hours"], comms["series"]
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(hours, series["raw"], color="grey", linewidth=1.2, label="full-JSON sync every tick")
    for lam, ys in series["llmtwin"].items():
        ax.plot(hours, ys, drawstyle="steps-post", linewidth=1.8, label=f"LLM-Twin, λ = {lam} h")
    for k, ys in series["fl"].items():
        ax.plot(hours, ys, drawstyle="steps-post", linestyle="--", linewidth=1.4, label=f"FL-DTN, K = {k}/day")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human_bytes(v)))
    ax.set_xlabel("simulated hours")
    ax.set_ylabel(f"cumulative bytes, {comms['homes']} homes (wire, both directions)")
    ax.set_title("communication over simulated time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="x-small", loc="lower right")


def _update(fig: Any, doc: Doc) -> None:
    upd = doc["time_per_update"]
    ax = fig.add_subplot(1, 1, 1)
    names = ["LLM-Twin", "FedAvg"]
    rows = [upd["llmtwin"], upd["fl"]]
    bottom = [0.0, 0.0]
    for part, color in (("edge_s", "tab:blue"), ("transfer_s", "tab:green"), ("server_s", "tab:red")):
        values = [float(r[part]) for r in rows]
        ax.bar(names, values, bottom=bottom, color=color, label=part.removesuffix("_s"))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        ax.annotate(f"{total:.0f} s", (i, total), ha="center", va="bottom")
    ax.set_ylabel("seconds per DTN update")
    ax.set_title(f"time per update, n = {upd['n']} entities, {upd['link_mbps']:g} Mbit/s uplink each")
    ax.legend(fontsize="small")


_DRAWERS: dict[str, Callable[[Any, Doc], None]] = {
    "accuracy": _accuracy,
    "edge_compute": _edge,
    "server_compute": _server,
    "comms_bytes": _comms,
    "update_time": _update,
}
