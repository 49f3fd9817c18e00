"""``llmtwin bench finetune``: one fine-tuning round on one home's static facts, measured end to end.

The round runs exactly as the daemon runs it: ``python -m edge.finetune.round --request F`` in a fresh
child process (which exec's a fresh image of itself for the eval), so ``peak_rss_mb`` is the round's
own peak over both (VmHWM per phase, ``peak_rss_by_phase``) and ``round_s`` includes their start-up.
The eval gate's threshold is 0 here so that the adapter is always exported and measured;
``passes_gate`` says whether the default threshold would have accepted it.

Reported (JSON): model, records, facts, steps, round_s (child wall time), round_inner_s (inside
run_round), phase seconds (load+cache / train loop / reference / eval / export), tokens_per_s (token
positions through the trained layers per second of the loop), heldout_accuracy (ONNX engine,
exact match, one held-out paraphrase per fact), sensitive_accuracy, state_accuracy,
state_accuracy_base and state_accuracy_floor (held-out-worded questions about drawn states: the
adapter, the base model alone, one constant yes/no answer; ``edge.finetune.reading``), peak_rss_mb,
adapter_bytes,
full_model_bytes and their ratio (what a federated round would ship instead), cpu_s of the child,
and the host's load average before and after (the box may be shared: a loaded box slows every phase).
``final_wordings``: the adapter in service after the last round on all held-out questions and on the
audit wordings (never trained on, never used for a choice), per template.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge.finetune.dataset import Example
from edge.finetune.round import RoundRequest
from edge.readings import StaticRecord
from shared.adapters import read_adapter
from shared.modelspec import DEFAULT_LORA_TARGETS, HF_DIR, default_cache_dir, find_prepared, load_spec
from shared.scenario import generate
from shared.templates import audit_pairs, pairs

REPO = Path(__file__).resolve().parents[1]
_DEFAULT_GATE = 0.9  # FinetuneSection.eval_threshold's default
_TARGET_ACCURACY = 0.97


def run(
    base: str = "smollm2-135m",
    out: Path = Path("finetune.json"),
    *,
    home: int = 1,
    seed: int = 7,
    homes: int = 3,
    threads: int = 2,
    max_time_s: float = 300.0,
    rounds: int = 1,
    cache_dir: Path | None = None,
    **recipe: Any,
) -> dict[str, Any]:
    """Run ``rounds`` consecutive rounds for home ``home`` of ``generate(seed, homes)`` on ``base``, each
    warm-started from (and gated against) the previous one's adapter, as λ-periodic rounds would be.
    The top-level numbers are the first (cold) round's; ``rounds`` lists every round. Writes and
    returns the report. ``recipe`` overrides RoundRequest fields (lr, batch_size, epochs, top_layers ...).
    """
    known = {f.name for f in dataclasses.fields(RoundRequest)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise ValueError(f"recipe: unknown RoundRequest fields {unknown}; known: {sorted(known)}")
    model_dir = prepared_model(base, cache_dir or default_cache_dir(os.environ))
    records = home_records(seed, homes, home)
    full_bytes = sum(p.stat().st_size for p in (model_dir / HF_DIR).glob("*.safetensors"))
    reports: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as work:
        current: str | None = None
        for number in range(1, rounds + 1):
            request = RoundRequest(
                twin_id=f"home{home}",
                version=number,
                model_dir=str(model_dir),
                out_dir=str(Path(work) / "adapters"),
                records=records,
                current_adapter=current,
                threads=threads,
                max_time_s=max_time_s,
                eval_threshold=0.0,
                seed=seed,
                **recipe,
            )
            print(f"round {number}/{rounds} (home{home}, {len(records)} records, {base})", flush=True)
            reports.append(_round_report(run_child(request, Path(work), number), full_bytes))
            if reports[-1]["status"] == "accepted":
                current = reports[-1]["adapter_path"]
        wordings = None if current is None else wording_scores(model_dir, Path(current), records, threads)
    report = {
        "model": base,
        "model_dir": str(model_dir),
        "home": f"home{home}",
        **{k: v for k, v in reports[0].items() if k != "adapter_path"},
        "full_model_bytes": full_bytes,
        "rounds": [{k: v for k, v in r.items() if k not in ("loss_curve", "adapter_path")} for r in reports],
        "accuracy_by_round": [r["heldout_accuracy"] for r in reports],
        "state_accuracy_by_round": [r["state_accuracy"] for r in reports],
        "cumulative_round_s": list(itertools.accumulate(r["round_s"] for r in reports)),
        "rounds_to_target": next(
            (i for i, r in enumerate(reports, 1) if (r["heldout_accuracy"] or 0) >= _TARGET_ACCURACY), None
        ),
        "final_wordings": wordings,
        "recipe": {k: v for k, v in json.loads(request.to_json()).items() if k != "records"},
        "host": {"cpus": os.cpu_count(), "threads": threads, "machine": platform.machine()},
    }
    target = out / "finetune.json" if out.is_dir() else out
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


def wording_scores(model_dir: Path, adapter: Path, records: Sequence[StaticRecord], threads: int) -> dict[str, Any]:
    """The adapter in service at the end, on every held-out question (the rounds score a 200-question
    sample) and on the audit wordings no choice was made on (``shared.templates.AUDIT_TEMPLATES``),
    per template: greedy exact match on the ONNX engine, as the eval gate scores."""
    from edge.finetune.dataset import encode_pairs
    from edge.finetune.evaluate import engine_accuracy
    from gateway.engine import Engine, EngineOptions
    from gateway.engine.text import TextCodec

    print(f"scoring {adapter.parent.name} on every held-out and audit wording", flush=True)
    spec = load_spec(model_dir)
    engine = Engine(model_dir, EngineOptions(threads=threads, slots=2, max_batch=64))
    assert engine.bank is not None
    engine.bank.load(1, read_adapter(adapter, spec))
    codec = TextCodec(model_dir / spec.tokenizer_file)
    qa = [p for p in pairs(records) if p.split == "heldout"] + audit_pairs(records)
    groups: dict[tuple[str, str], list[Example]] = {}  # (split, template) -> its questions
    for example in encode_pairs(qa, codec, spec.eos_token_ids[0]):
        groups.setdefault((example.pair.split, example.pair.template), []).append(example)
    scores = {key: engine_accuracy(engine, {"adapter": 1}, rows)["adapter"] for key, rows in groups.items()}
    out: dict[str, Any] = {"adapter": adapter.parent.name}
    for split in ("heldout", "audit"):
        mine = {template: score for (of, template), score in scores.items() if of == split}
        n = sum(s.n for s in mine.values())
        out[split] = {
            "accuracy": round(sum(s.accuracy * s.n for s in mine.values()) / n, 4) if n else None,
            "n": n,
            "by_template": {k: round(s.accuracy, 3) for k, s in sorted(mine.items())},
        }
    return out


def home_records(seed: int, homes: int, home: int) -> tuple[StaticRecord, ...]:
    """The static records of home ``home`` (1-based) of ``generate(seed, homes)``, as the daemon reads them."""
    facts = generate(seed=seed, homes=homes, duration_s=60).homes[home - 1].static_facts()
    return tuple(StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in facts)


def _round_report(child: dict[str, Any], full_bytes: int) -> dict[str, Any]:
    result = child["result"]
    accuracy = result["accuracy"]
    return {
        "status": result["status"],
        "reason": result["reason"],
        "adapter_path": result["adapter_path"],
        "warm_start": result["warm_start"],
        "records": result["records"],
        "facts": result["facts"],
        "train_examples": result["train_examples"],
        "eval_examples": result["eval_examples"],
        "steps": result["steps"],
        "stop_reason": result["stop_reason"],
        "final_loss": result["loss"],
        "round_s": child["wall_s"],
        "round_inner_s": result["seconds"],
        "phases_s": child["phases_s"],
        "cache_s": result["cache_s"],
        "cache_reused": result.get("cache_reused", 0),
        "losses_known": result.get("losses_known", 0),
        "train_s": result["train_s"],
        "eval_s": result["eval_s"],
        "tokens": result["tokens"],
        "tokens_per_s": round(result["tokens"] / result["train_s"], 1) if result["train_s"] else None,
        "heldout_accuracy": accuracy,
        "previous_accuracy": result["current_accuracy"],
        "sensitive_accuracy": result["sensitive_accuracy"],
        "state_examples": result.get("state_examples", 0),
        "state_accuracy": result.get("state_accuracy"),  # state questions: the adapter, then the base model
        "state_accuracy_base": result.get("state_accuracy_base"),
        "state_accuracy_floor": result.get("state_accuracy_floor"),
        "state_eval_examples": result.get("state_eval_examples", 0),
        "passes_gate": accuracy is not None and accuracy >= _DEFAULT_GATE,
        "meets_target_accuracy": accuracy is not None and accuracy >= _TARGET_ACCURACY,
        "parity_max_abs": result["parity_max_abs"],
        "peak_rss_mb": result["peak_rss_mb"],
        "peak_vm_mb": result["peak_vm_mb"],
        "cpu_s": child["cpu_s"],
        "adapter_bytes": result["adapter_bytes"],
        "full_to_adapter_ratio": round(full_bytes / result["adapter_bytes"], 1) if result["adapter_bytes"] else None,
        "load_before": child["load_before"],
        "load_after": child["load_after"],
        "loss_curve": result["loss_curve"],
    }


def run_child(request: RoundRequest, work: Path, number: int, *options: str) -> dict[str, Any]:
    """``python -m edge.finetune.round`` on ``request`` (files ``work/request<number>[.result].json``;
    ``options``: more of its arguments): wall time, CPU time, phase times and the RoundResult as a dict
    (``result``)."""
    path = work / f"request{number}.json"
    path.write_text(request.to_json(), encoding="utf-8")
    load_before = os.getloadavg()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)  # ru_maxrss: the largest child so far
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with subprocess.Popen(
        [sys.executable, "-m", "edge.finetune.round", "--request", str(path), "--progress", "jsonl", *options],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    ) as proc:
        assert proc.stdout is not None
        phases: dict[str, float] = {}  # phase -> seconds after the child started when it was first reported
        for line in proc.stdout:
            event = json.loads(line)
            phases.setdefault(event["phase"], round(time.monotonic() - start, 2))
            if event["phase"] == "train" and event["step"] % 25 == 0:
                print(
                    f"  step {event['step']}/{event['total']} loss {event['loss']:.4f} {event['elapsed_s']:.0f}s",
                    flush=True,
                )
        proc.wait()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(path.with_name(path.stem + ".result.json").read_text(encoding="utf-8"))
    marks = [*sorted(phases.items(), key=lambda kv: kv[1]), ("end", round(wall, 2))]
    return {
        "result": result,
        "wall_s": round(wall, 2),
        "phases_s": {"startup": marks[0][1]}
        | {a: round(t2 - t1, 2) for (a, t1), (_b, t2) in itertools.pairwise(marks)},
        "cpu_s": round((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def prepared_model(base: str, cache: Path) -> Path:
    """The prepared model directory of ``base`` in ``cache``, prepared first when it is not there or its
    graph lacks a default LoRA target (prepared by an older release: rounds would fail on it)."""
    found = find_prepared(cache, base)
    if found is not None and set(DEFAULT_LORA_TARGETS) <= set(load_spec(found).targets):
        return found
    from edge.model.prepare import prepare_model  # torch etc. only when the model is not ready yet

    return prepare_model(base, cache).path
