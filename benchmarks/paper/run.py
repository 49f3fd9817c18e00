"""``llmtwin bench paper``: the phases in order, resumable, and the JSON + figures + docs/results.md.

    adapters -> privacy -> compute -> comms        (each result saved to <work>/paper-state.json)
    then: the final JSON (``out``), the figures and the markdown, all from that JSON

A rerun with the same settings skips every phase the state file holds. ``restart`` deletes the state
first, and every phase after the adapters measures again; the trained rounds under ``<work>/adapters``
are kept, since the adapters phase reuses a round only when its record holds the very request it would
send (:mod:`benchmarks.paper.adapters`), so ``--rounds 10 --restart`` continues a seven-round run. A
reused round keeps its measured time and memory; to train again (after changing the edge's training
code, say) delete ``<work>/adapters``. Settings that change what a phase measures are the state's key: a
rerun with other ones is refused (``--restart`` or another ``--work``).
Composition-only settings (horizon, link rate) are applied when the JSON is assembled, so changing them
re-renders without measuring again.
Input checks and the settings object: :mod:`benchmarks.paper.config`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.paper import comms, compute, document, figures
from benchmarks.paper.config import PaperConfig, PaperInputError, check_inputs, effective_recipe

ADAPTERS_DIR = "adapters"  # the trained rounds, kept by --restart
STATE_FILE = "paper-state.json"
STATE_VERSION = 1
DATA_PHASES = ("adapters", "privacy", "compute", "comms")

# The paper's LLaMA-7B case study, only as far as the issue and the brief quote it; null = not stated.
PAPER: dict[str, Any] = {
    "model": "LLaMA-7B",
    "normal_accuracy_range": [0.91, 0.97],
    "normal_accuracy": {"100": None, "500": None, "1000": None},
    "reverse_success": {"500": 0.0, "1000": 0.0},
    "likelihood_attack_top1": None,
    "chance": None,
    "canary_exposure": None,
    "edge_s_llmtwin": 400,  # "~400 s to stabilise"
    "edge_peak_rss_mb": 5878,
    "edge_s_fl": None,
    "server_s_llmtwin": None,
    "server_s_fl": None,
    "bytes_llmtwin": None,
    "bytes_fl": None,
}
TARGET_NORMAL = 0.97
TARGET_LIKELIHOOD_MARGIN = 0.02


# state


@dataclass
class State:
    path: Path
    key: dict[str, Any]
    phases: dict[str, dict[str, Any]]

    def save(self) -> None:
        doc = {"version": STATE_VERSION, "key": self.key, "phases": self.phases}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def load_state(cfg: PaperConfig, *, restart: bool) -> State:
    """The state of ``cfg.work`` (fresh with ``restart``: all but the trained rounds removed); refuses one
    made with other settings."""
    path = cfg.work / STATE_FILE
    if restart and cfg.work.exists():
        for entry in cfg.work.iterdir():
            if entry.name == ADAPTERS_DIR and entry.is_dir():
                continue  # rounds are reused only for the very request they ran (benchmarks.paper.adapters)
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    cfg.work.mkdir(parents=True, exist_ok=True)
    key = cfg.key()
    if not path.is_file():
        return State(path, key, {})
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PaperInputError(f"{path}: unreadable state ({exc}); pass --restart to start clean") from exc
    if doc.get("version") != STATE_VERSION or doc.get("key") != key:
        old = doc.get("key") or {}
        diff = sorted(k for k in set(old) | set(key) if old.get(k) != key.get(k))
        raise PaperInputError(
            f"{cfg.work} holds a run with other settings ({', '.join(diff) or 'state version'}): "
            "pass --restart to measure again (trained rounds are reused only where their requests match), "
            "or another --work"
        )
    return State(path, key, dict(doc.get("phases") or {}))


# phases


@dataclass(frozen=True)
class Context:
    cfg: PaperConfig
    model_dir: Path
    state: State

    def adapters(self) -> list[Any]:
        from benchmarks.paper.adapters import HomeAdapter

        rows = self.state.phases["adapters"]["result"]["homes"]
        return [HomeAdapter(**{**row, "artifact": Path(row["artifact"])}) for row in rows]


Phase = Callable[[Context], dict[str, Any]]


def _adapters(ctx: Context) -> dict[str, Any]:
    from benchmarks.paper.adapters import train_home_adapters

    cfg = ctx.cfg
    done = train_home_adapters(
        cfg.work / ADAPTERS_DIR,
        cfg.base,
        cfg.cache_dir,
        cfg.homes,
        seed=cfg.seed,
        n_homes=cfg.n_homes,
        max_time_s=cfg.max_time_s,
        rounds=cfg.rounds,
        threads=cfg.threads,
        recipe=cfg.recipe,
        pseudonyms=cfg.pseudonyms,
    )
    return {"homes": [{**asdict(a), "artifact": str(a.artifact)} for a in done]}


def _privacy(ctx: Context) -> dict[str, Any]:
    from benchmarks.paper.privacy import run_privacy

    cfg = ctx.cfg
    result = run_privacy(
        cfg.work / "privacy",
        cfg.base,
        cfg.cache_dir,
        ctx.adapters(),
        sizes_normal=cfg.sizes_normal,
        sizes_reverse=cfg.sizes_reverse,
        seed=cfg.seed,
        n_homes=cfg.n_homes,
        threads=cfg.threads,
        pseudonyms=cfg.pseudonyms,
    )
    plain: dict[str, Any] = json.loads(json.dumps(result))  # int size keys become the strings they are in JSON
    return plain


def _compute(ctx: Context) -> dict[str, Any]:
    cfg, adapters = ctx.cfg, ctx.adapters()
    folder = cfg.work / "compute"
    recipe = effective_recipe(cfg.recipe)
    edge = compute.edge_compute(
        ctx.model_dir,
        adapters[0],
        folder,
        seed=cfg.seed,
        n_homes=cfg.n_homes,
        warmup=cfg.fl_warmup,
        steps=cfg.fl_steps,
        threads=cfg.threads,
        state_share=float(recipe["state_share"]),
        state_checks=int(recipe["state_checks"]),
    )
    server = compute.server_compute(
        ctx.model_dir,
        [a.artifact for a in adapters],
        range(1, cfg.server_n + 1),
        folder,
        [float(a.facts) for a in adapters],
    )
    return {"edge": edge, "server": server}


def _comms(ctx: Context) -> dict[str, Any]:
    cfg = ctx.cfg
    arts = [comms.Artifact(a.home, a.twin_id, a.artifact) for a in ctx.adapters()]
    units = comms.measure(
        ctx.model_dir, cfg.base, cfg.cache, arts, hours=cfg.comms_hours, seed=cfg.seed, n_homes=cfg.n_homes
    )
    return {"units": units.to_json()}


PHASES: dict[str, Phase] = {"adapters": _adapters, "privacy": _privacy, "compute": _compute, "comms": _comms}


# ------------------------------------------------------------------------------------------------
# the run


def run(
    cfg: PaperConfig,
    *,
    restart: bool = False,
    redo: Sequence[str] = (),
    phases: Mapping[str, Phase] = PHASES,
) -> dict[str, Any]:
    """Every phase not in the state yet (and those in ``redo``, measured again: say, a timing phase that
    shared the CPU), then the JSON, figures and markdown. Returns the JSON document."""
    unknown = sorted(set(redo) - set(phases))
    if unknown:
        raise PaperInputError(f"--redo: unknown phases {unknown}; the phases are {', '.join(phases)}")
    model_dir = check_inputs(cfg)
    state = load_state(cfg, restart=restart)
    for name in redo:
        state.phases.pop(name, None)
    ctx = Context(cfg, model_dir, state)
    load_before = _load()
    for name, phase in phases.items():
        if name in state.phases:
            print(f"paper: {name}: done in an earlier run (resumed from {state.path})", flush=True)
            continue
        print(f"paper: {name} ...", flush=True)
        began, before = time.monotonic(), _load()
        result = phase(ctx)
        state.phases[name] = {
            "result": result,
            "wall_s": round(time.monotonic() - began, 1),
            "load_before": before,
            "load_after": _load(),
        }
        state.save()
    doc = assemble(cfg, state, model_dir, load_before)
    publish(doc, cfg.out, cfg.figures, cfg.doc)
    return doc


def publish(doc: dict[str, Any], out: Path, figures_dir: Path, doc_path: Path | None) -> list[Path]:
    """Figures from ``doc``, then ``doc`` (with their paths) to ``out``, then the markdown."""
    drawn = figures.render_all(doc, figures_dir)
    doc["figures"] = [_shown(p) for p in drawn]
    doc["doc"] = None if doc_path is None else _shown(doc_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    if doc_path is not None:
        document.write(doc, out, drawn, doc_path)
    return drawn


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (the repository's docs/...)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def rerender(json_path: Path, figures_dir: Path, doc_path: Path | None) -> list[Path]:
    """``--figures-only``: figures and markdown from an existing JSON (PaperInputError if unreadable)."""
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PaperInputError(f"{json_path}: not a readable paper bench JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("benchmark") != "paper":
        raise PaperInputError(f"{json_path}: not written by `llmtwin bench paper`")
    return publish(doc, json_path, figures_dir, doc_path)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def assemble(cfg: PaperConfig, state: State, model_dir: Path, load_before: list[float]) -> dict[str, Any]:
    """The final JSON from the phase results (a phase not run leaves its keys null)."""
    result = {name: (state.phases.get(name) or {}).get("result") for name in DATA_PHASES}
    privacy = result["privacy"] or {}
    edge = (result["compute"] or {}).get("edge") or {}
    server = (result["compute"] or {}).get("server") or {}
    composed = None
    if result["comms"]:
        units = comms.Units.from_json(result["comms"]["units"])
        composed = comms.compose(units, horizon_h=cfg.horizon_h, link_mbps=cfg.link_mbps)
        composed |= {"method": comms.method(units), "units": units.to_json()}
    doc: dict[str, Any] = {
        "benchmark": "paper",
        "command": cfg.command(),
        "model": cfg.base,
        "model_dir": str(model_dir),
        "homes": list(cfg.homes),
        "settings": cfg.key() | {"horizon_h": cfg.horizon_h, "link_mbps": cfg.link_mbps},
        "reduced": cfg.reduced(),
        "normal_accuracy": privacy.get("normal_accuracy"),
        "reverse_success": privacy.get("reverse_success"),
        "likelihood_attack_top1": privacy.get("likelihood_attack_top1"),
        "chance": privacy.get("chance"),
        "canary_exposure": privacy.get("canary_exposure"),
        "edge_s_llmtwin": edge.get("edge_s_llmtwin"),
        "edge_s_fl": edge.get("edge_s_fl"),
        "edge_s_fl_measured_steps": edge.get("edge_s_fl_measured_steps"),
        "extrapolated": edge.get("extrapolated"),
        "peak_rss_mb_llmtwin": edge.get("peak_rss_mb_llmtwin"),
        "peak_rss_mb_fl": edge.get("peak_rss_mb_fl"),
        "server_s_llmtwin": server.get("server_s_llmtwin"),
        "server_s_fl": server.get("server_s_fl"),
        "bytes_llmtwin": (composed or {}).get("bytes_llmtwin"),
        "bytes_fl": (composed or {}).get("bytes_fl"),
        "time_per_update": time_per_update(edge, server, composed, cfg.link_mbps),
        "targets": targets(privacy),
        "paper": PAPER,
        "adapters": (result["adapters"] or {}).get("homes"),
        "privacy": result["privacy"],
        "compute": result["compute"],
        "comms": composed,
        "phases": {k: {f: v for f, v in p.items() if f != "result"} for k, p in state.phases.items()},
        "host": {
            "machine": f"{platform.machine()}, {platform.system()} {platform.release()}",
            "cpus": os.cpu_count(),
            "threads": cfg.threads,
            "load_before": load_before,
            "load_after": _load(),
        },
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return doc


def time_per_update(
    edge: Mapping[str, Any], server: Mapping[str, Any], composed: Mapping[str, Any] | None, link_mbps: float
) -> dict[str, Any] | None:
    """Edge + transfer + server of one update, both systems, at the largest n measured."""
    if not edge or not server or not composed:
        return None
    n = str(server["n"][-1])
    upload = round(statistics.fmean(composed["adapter_upload_bytes"]))
    ours = compute.update_time(edge["edge_s_llmtwin"], upload, server["server_s_llmtwin_per_n"][n], link_mbps)
    fl = compute.update_time(edge["edge_s_fl"], composed["fl_round_bytes"], server["server_s_fl_per_n"][n], link_mbps)
    return {
        "n": int(n),
        "link_mbps": link_mbps,
        "llmtwin": ours.to_json(),
        "fl": fl.to_json(),
        "ratio_fl_over_llmtwin": round(fl.total_s / ours.total_s, 2) if ours.total_s else None,
    }


def targets(privacy: Mapping[str, Any]) -> dict[str, Any]:
    normal, reverse = privacy.get("normal_accuracy") or {}, privacy.get("reverse_success") or {}
    top1, chance = privacy.get("likelihood_attack_top1"), privacy.get("chance")
    return {
        "normal_min": TARGET_NORMAL,
        "normal_met": all(v is not None and v >= TARGET_NORMAL for v in normal.values()) if normal else None,
        "reverse_met": all(v == 0 for v in reverse.values()) if reverse else None,
        "likelihood_max": None if chance is None else round(chance + TARGET_LIKELIHOOD_MARGIN, 4),
        "likelihood_met": None if top1 is None or chance is None else top1 <= chance + TARGET_LIKELIHOOD_MARGIN,
    }


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The headline keys, for the terminal."""
    keys = (
        "normal_accuracy",
        "reverse_success",
        "likelihood_attack_top1",
        "chance",
        "canary_exposure",
        "edge_s_llmtwin",
        "edge_s_fl",
        "extrapolated",
        "server_s_llmtwin",
        "server_s_fl",
        "bytes_llmtwin",
        "bytes_fl",
        "time_per_update",
        "targets",
        "reduced",
        "figures",
        "doc",
    )
    return {k: doc.get(k) for k in keys}
