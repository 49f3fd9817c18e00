"""``llmtwin bench round-memory``: a fine-tuning round's peak memory with the eval in a fresh process
(the round's CLI exec's after training: ``edge.finetune.handoff``) against the baseline that scores in
the training process (``--same-process``), same home, same requests, in the same run.

Two chains of ``rounds`` consecutive rounds (each warm-started from its own chain's previous adapter,
as λ-periodic rounds are), run interleaved, each first every other round, so that a busy moment of
the host hits both alike. Per round:
the peak resident set overall and per phase (``peak_rss_by_phase``: both processes' when the round
exec'd), the phase it peaked in, peak virtual size, wall time and held-out accuracy. The claim is
``peak_ratio``: the baseline's highest round peak over the fresh-eval one's.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.finetune import home_records, prepared_model, run_child
from edge.finetune.memory import peak_phase
from edge.finetune.round import RoundRequest
from shared.modelspec import default_cache_dir

MODES = {"same_process": ("--same-process",), "fresh_eval": ()}


def run(
    base: str = "smollm2-135m",
    out: Path = Path("round_memory.json"),
    *,
    home: int = 1,
    seed: int = 7,
    homes: int = 3,
    threads: int = 2,
    max_time_s: float = 150.0,
    rounds: int = 2,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    model_dir = prepared_model(base, cache_dir or default_cache_dir(os.environ))
    records = home_records(seed, homes, home)
    chains: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with tempfile.TemporaryDirectory(prefix="bench-round-memory-") as work:
        current: dict[str, str | None] = dict.fromkeys(MODES)
        for number in range(1, rounds + 1):
            order = list(MODES.items()) if number % 2 else list(MODES.items())[::-1]  # neither always first
            for mode, options in order:
                folder = Path(work) / mode
                folder.mkdir(exist_ok=True)
                request = RoundRequest(
                    twin_id=f"home{home}",
                    version=number,
                    model_dir=str(model_dir),
                    out_dir=str(folder / "adapters"),
                    records=records,
                    current_adapter=current[mode],
                    threads=threads,
                    max_time_s=max_time_s,
                    eval_threshold=0.0,
                    seed=seed,
                )
                print(f"round {number}/{rounds} ({mode}, home{home}, {len(records)} records)", flush=True)
                child = run_child(request, folder, number, *options)
                chains[mode].append(_round(child))
                if child["result"]["status"] == "accepted":
                    current[mode] = child["result"]["adapter_path"]
    peaks = {mode: max(r["peak_rss_mb"] for r in rs) for mode, rs in chains.items()}
    evals = {mode: max(r["peak_rss_by_phase"].get("eval", 0.0) for r in rs) for mode, rs in chains.items()}
    report = {
        "model": base,
        "home": f"home{home}",
        "records": len(records),
        "rounds": rounds,
        "max_time_s": max_time_s,
        "peak_rss_mb": peaks,
        "eval_peak_rss_mb": evals,
        "peak_ratio": round(peaks["same_process"] / peaks["fresh_eval"], 3) if peaks["fresh_eval"] else None,
        "eval_peak_ratio": round(evals["same_process"] / evals["fresh_eval"], 3) if evals["fresh_eval"] else None,
        "by_round": chains,
        "host": {"cpus": os.cpu_count(), "threads": threads, "machine": platform.machine()},
    }
    target = out / "round_memory.json" if out.is_dir() else out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def _round(child: dict[str, Any]) -> dict[str, Any]:
    result = child["result"]
    phases = result.get("peak_rss_by_phase") or {}
    return {
        "status": result["status"],
        "fresh_eval": result["fresh_eval"],  # which way the round really went
        "warm_start": result["warm_start"],
        "steps": result["steps"],
        "heldout_accuracy": result["accuracy"],
        "round_s": child["wall_s"],
        "eval_s": result["eval_s"],
        "peak_rss_mb": result["peak_rss_mb"],
        "peak_at": peak_phase(phases),
        "peak_rss_by_phase": phases,
        "peak_vm_mb": result["peak_vm_mb"],
    }
