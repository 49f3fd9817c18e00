"""One fine-tuning round, meant to run in a child process of the daemon.

    run_round(RoundRequest) -> RoundResult          (plain, picklable dataclasses)
    python -m edge.finetune.round --request REQ.json [--result RES.json] [--progress auto|bar|jsonl|none]

Phases (each reported through ``progress``)::

    dataset    static records -> one-way Q/A pairs -> tokens        too few facts -> "skipped"
    load       the base model, the warm start (adapter in service or resume point), the lower-layer cache
    train      LoRA on the train paraphrases (edge.finetune.train)
    reference  the exported tensors in PEFT on a few prompts (for the parity check)
    eval       the ONNX engine: candidate in slot 1, the adapter in service in slot 2, same batches; the
               in-service adapter's own round's score when it was measured on the same questions
               (edge.finetune.eval_record), and that half of the eval's time goes to training
    gate       threshold and no regression against the adapter in service   else "rejected"
    export     write_adapter + loss curve into a staging directory, renamed to <out_dir>/v<version>;
               a rejected candidate goes to <out_dir>/candidates/v<version> instead: never served, but
               the next round may resume from it (``resume_adapter``), so progress accumulates
    prune      keep the newest ``keep_versions`` version directories (and the one in service)

The frozen lower layers' output is kept in ``<out_dir>/lower_cache.npz`` (edge.finetune.lower_store):
a catch-up round minutes later on the same facts skips that pass and spends the time training.

Only a staging directory is ever written before the final rename (``edge.finetune.versions``); it is
removed on any exit, and one left by a killed process is removed by the next round. Memory-cap hits
(MemoryError, a failed torch/ORT allocation) and model/adapter errors give a "failed" result; anything
else (an exception raised by the progress callback, KeyboardInterrupt) propagates after cleanup.
Peak RSS is the process's own, overall and per phase (``edge.finetune.memory``): run a round in a fresh
process for a meaningful number.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

from edge.finetune.dataset import Example, FactDataset, build_dataset, eval_sample
from edge.finetune.eval_record import FILE_NAME as EVAL_SCORE
from edge.finetune.eval_record import load_score, sample_digest, save_score
from edge.finetune.evaluate import Score, check_parity, engine_accuracy, gate, peft_reference
from edge.finetune.focus import FILE_NAME as EXAMPLE_LOSSES
from edge.finetune.focus import load_losses, save_losses
from edge.finetune.lower_store import FILE_NAME as LOWER_CACHE
from edge.finetune.lower_store import LowerStore
from edge.finetune.memory import PhasePeaks, map_large_allocations, peak_vm_mb, release_memory
from edge.finetune.request import ProgressFn, RoundProgress, RoundRequest, RoundResult, Status
from edge.finetune.train import StepInfo, TrainOptions, TrainResult, load_model, train, warm_start_tensors
from edge.finetune.versions import prune, publish, remove_dead_staging, staging, versions
from shared.adapter_codec import quantize
from shared.adapters import ARTIFACT_SUFFIX, AdapterManifest, Array, LoadedAdapter, read_adapter, write_adapter
from shared.errors import AdapterError, ModelError, TwinError
from shared.modelspec import HF_DIR, ModelSpec, load_spec

__all__ = ["ProgressFn", "RoundProgress", "RoundRequest", "RoundResult", "Status", "run_round", "versions"]

ARTIFACT_NAME = "adapter" + ARTIFACT_SUFFIX
TRAIN_STATE_NAME = "train_state" + ARTIFACT_SUFFIX  # float32 tensors before rounding: resume point only
LOSS_CURVE = "loss_curve.json"
CANDIDATES = "candidates"  # <out_dir>/candidates/v<N>: rejected rounds' adapters, resume points only
KEEP_CANDIDATES = 2
PARITY_ROWS = 4  # prompts in the PEFT-vs-ONNX parity sample
_CANDIDATE_SLOT, _CURRENT_SLOT = 1, 2
# Of the time a round keeps back for after training (1 - train_share), the part its eval takes when it
# scores two adapters (57 s of 90 s in the bench's catch-up rounds); scoring one gives half of it back.
_EVAL_PART = 2 / 3


@dataclass(frozen=True, slots=True)
class _EvalPlan:
    sample: list[Example]  # the held-out questions both adapters are scored on
    digest: str  # edge.finetune.eval_record.sample_digest of them
    current_known: float | None  # the in-service adapter's score on them, from its own round
    rescore: bool  # the eval scores the adapter in service too (there is one and its score is not known)


def run_round(request: RoundRequest, progress: ProgressFn | None = None) -> RoundResult:
    """One complete round; never leaves a partial version directory behind."""
    start = time.monotonic()
    base = RoundResult("failed", "", request.twin_id, request.version)
    peaks = PhasePeaks()
    forward = progress or (lambda _p: None)

    def report(p: RoundProgress) -> None:
        peaks.enter(p.phase)
        forward(p)

    try:
        result = _run(request, report, peaks, start, base)
    except MemoryError as exc:
        result = _failed(base, start, f"memory cap hit: {exc or 'MemoryError'} (during {peaks.phase})")
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise
        result = _failed(base, start, f"memory cap hit: {str(exc).splitlines()[0][:200]} (during {peaks.phase})")
    except (TwinError, OSError) as exc:
        result = _failed(base, start, f"{type(exc).__name__}: {exc}")
    phases = peaks.finish()
    return replace(result, peak_rss_mb=peaks.overall_mb(), peak_rss_by_phase=phases, peak_vm_mb=peak_vm_mb())


def _run(
    request: RoundRequest, report: ProgressFn, peaks: PhasePeaks, start: float, base: RoundResult
) -> RoundResult:
    model_dir, out_dir = Path(request.model_dir), Path(request.out_dir)
    final = out_dir / f"v{request.version}"
    if final.exists():
        return _failed(base, start, f"{final} already exists: versions are never overwritten")
    spec = load_spec(model_dir)
    missing = sorted(set(request.targets) - set(spec.targets))
    if missing:  # the gateway (and the eval gate's engine) could not serve it: say so before training
        return _failed(
            base,
            start,
            f"targets {missing} are not in the serving graph of {model_dir.name} (it has {list(spec.target_modules)}); "
            f"prepare it with `llmtwin model prepare --base {spec.source} --max-rank {spec.max_rank} "
            f"--bank-dtype {spec.bank_dtype} --targets {','.join(request.targets)}` (and the gateway's model alike)",
        )
    report(RoundProgress("dataset", 0, 1, None, time.monotonic() - start))
    data = build_dataset(request.records, model_dir / spec.tokenizer_file, spec.eos_token_ids[0])
    base = replace(base, records=data.records, facts=data.facts, train_examples=len(data.train))
    skip = _skip_reason(data, request.min_facts)
    if skip is not None:  # and no rows of facts that are gone stay on disk
        LowerStore(out_dir / LOWER_CACHE, spec.fingerprint).remove()
        return replace(base, status="skipped", reason=skip, seconds=time.monotonic() - start)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(out_dir)
    with staging(out_dir) as stage:
        plan = _eval_plan(request, spec, data)
        share = _train_share(request.train_share, plan.rescore)
        trained, warm = _train(request, spec, data, report, start, share)
        base = replace(
            base,
            warm_start=warm,
            steps=trained.steps,
            stop_reason=trained.stop_reason,
            loss=round(trained.final_loss, 6),
            tokens=trained.tokens,
            cache_s=round(trained.cache_seconds, 2),
            cache_reused=trained.reused_rows,
            losses_known=trained.losses_known,
            train_s=round(trained.seconds, 2),
            loss_curve=tuple(round(v, 5) for v in trained.losses),
        )
        if not math.isfinite(trained.final_loss):
            return _failed(base, start, "training diverged (non-finite loss)")
        result = _evaluate_and_export(request, spec, plan, trained, stage, report, peaks, start, base)
        if result.status == "accepted":
            publish(stage, final)
        elif result.checkpoint_path:  # a resume point for the next round, never served
            (out_dir / CANDIDATES).mkdir(exist_ok=True)
            publish(stage, Path(result.checkpoint_path).parent)
    if result.status == "accepted":
        prune(out_dir, request.keep_versions, request.current_adapter)
    elif result.checkpoint_path:
        prune(out_dir / CANDIDATES, KEEP_CANDIDATES, request.resume_adapter)
    return replace(result, seconds=round(time.monotonic() - start, 2))


def _skip_reason(data: FactDataset, min_facts: int) -> str | None:
    if data.records == 0:
        return "no static records"
    if data.facts < min_facts or not data.heldout:
        return f"only {data.facts} askable static facts (from {data.records} records); a round needs {min_facts}"
    return None


def _eval_plan(request: RoundRequest, spec: ModelSpec, data: FactDataset) -> _EvalPlan:
    sample = eval_sample(data.heldout, per_fact=1, seed=request.seed, limit=request.eval_limit)
    digest = sample_digest(spec.fingerprint, sample)
    known = None
    if request.current_adapter is not None:
        known = load_score(Path(request.current_adapter).with_name(EVAL_SCORE), digest)
    return _EvalPlan(sample, digest, known, rescore=request.current_adapter is not None and known is None)


def _train_share(train_share: float, two_adapters: bool) -> float:
    """The part of the round before the eval: ``train_share`` when the eval scores two adapters."""
    return train_share if two_adapters else train_share + (1 - train_share) * _EVAL_PART / 2


def _train(
    request: RoundRequest, spec: ModelSpec, data: FactDataset, report: ProgressFn, start: float, share: float
) -> tuple[TrainResult, bool]:
    def on_step(info: StepInfo) -> None:
        report(RoundProgress("train", info.step, info.planned_steps, info.loss, time.monotonic() - start))

    opts = request.train_options()
    report(RoundProgress("load", 0, 1, None, time.monotonic() - start))
    init, source = _warm_start(request, spec, opts)
    model = load_model(Path(request.model_dir) / HF_DIR, opts, init)
    budget = request.max_time_s * share - (time.monotonic() - start)  # the rest: eval, export
    store = LowerStore(Path(request.out_dir) / LOWER_CACHE, spec.fingerprint)
    seen = load_losses(source.with_name(EXAMPLE_LOSSES)) if init is not None and source is not None else {}
    trained = train(model, data, replace(opts, max_time_s=max(1.0, budget)), on_step, store, seen)
    del model
    release_memory()
    return trained, init is not None


def _evaluate_and_export(
    request: RoundRequest,
    spec: ModelSpec,
    plan: _EvalPlan,
    trained: TrainResult,
    stage: Path,
    report: ProgressFn,
    peaks: PhasePeaks,
    start: float,
    base: RoundResult,
) -> RoundResult:
    adapter = _candidate(request, spec, trained)
    base, score, note = _evaluate(request, spec, plan, adapter, report, start, base)
    ok, why = gate(round(score.accuracy, 4), request.eval_threshold, base.current_accuracy)
    report(RoundProgress("export", 0, 1, None, time.monotonic() - start))
    manifest = _manifest(request, adapter, base, time.monotonic() - start, peaks.overall_mb())
    # encoded from the trained tensors: decoding gives exactly the quantize()d values that were scored
    write_adapter(stage / ARTIFACT_NAME, trained.tensors, manifest)
    # full precision beside it, never uploaded: the next round resumes from this, not from the rounded copy
    write_adapter(stage / TRAIN_STATE_NAME, trained.tensors, replace(manifest, dtype="float32"))
    save_losses(stage / EXAMPLE_LOSSES, trained.example_losses)  # where the next round's epochs start
    save_score(stage / EVAL_SCORE, plan.digest, score.accuracy, score.n)  # the next round's in-service score
    if not ok:  # kept as a candidate: training progress carries over to the next round
        checkpoint = Path(request.out_dir) / CANDIDATES / f"v{request.version}" / ARTIFACT_NAME
        return replace(base, status="rejected", reason=why + note + _misses(score), checkpoint_path=str(checkpoint))
    curve = {
        "losses": list(base.loss_curve),
        "stop_reason": trained.stop_reason,
        "planned_steps": trained.planned_steps,
    }
    (stage / LOSS_CURVE).write_text(json.dumps(curve) + "\n", encoding="utf-8")
    final = Path(request.out_dir) / f"v{request.version}" / ARTIFACT_NAME
    size = (stage / ARTIFACT_NAME).stat().st_size
    return replace(base, status="accepted", reason=why + note, adapter_path=str(final), adapter_bytes=size)


def _evaluate(
    request: RoundRequest,
    spec: ModelSpec,
    plan: _EvalPlan,
    adapter: LoadedAdapter,
    report: ProgressFn,
    start: float,
    base: RoundResult,
) -> tuple[RoundResult, Score, str]:
    """Parity, then held-out accuracy of the candidate (and of the adapter in service) on the engine."""
    from gateway.engine import Engine, EngineOptions  # after training: the ORT session replaces torch's memory

    sample = plan.sample
    map_large_allocations()
    report(RoundProgress("reference", 0, 1, None, time.monotonic() - start))
    model_dir = Path(request.model_dir)
    reference = peft_reference(model_dir / HF_DIR, adapter, spec.module_paths, [e.prompt for e in sample[:PARITY_ROWS]])
    release_memory()
    eval_start = time.monotonic()
    report(RoundProgress("eval", 0, len(sample), None, time.monotonic() - start))  # the engine's load is the eval's
    engine = Engine(model_dir, EngineOptions(threads=request.threads, slots=3, max_batch=64))
    if engine.bank is None:
        raise ModelError(f"{model_dir}: the serving graph has no adapter bank inputs")
    engine.bank.load(_CANDIDATE_SLOT, adapter)
    parity = check_parity(engine, _CANDIDATE_SLOT, reference)
    slots = {"candidate": _CANDIDATE_SLOT}
    current, note = _current_adapter(request, spec) if plan.rescore else (None, "")
    if current is not None:
        engine.bank.load(_CURRENT_SLOT, current)
        slots["current"] = _CURRENT_SLOT

    def on_batch(done: int, total: int) -> None:
        report(RoundProgress("eval", done, total, None, time.monotonic() - start))

    scores = engine_accuracy(engine, slots, sample, on_batch)
    score = scores["candidate"]
    current_acc = scores["current"].accuracy if "current" in scores else plan.current_known
    if current_acc is None:
        current_acc = request.current_score
    base = replace(
        base,
        accuracy=round(score.accuracy, 4),
        current_accuracy=None if current_acc is None else round(current_acc, 4),
        sensitive_accuracy=None if score.sensitive_accuracy is None else round(score.sensitive_accuracy, 4),
        eval_examples=score.n,
        eval_s=round(time.monotonic() - eval_start, 2),
        parity_max_abs=parity,
    )
    return base, score, note


def _candidate(request: RoundRequest, spec: ModelSpec, trained: TrainResult) -> LoadedAdapter:
    """The trained tensors exactly as the gateway will decode them (rounded or quantized to the artifact's
    dtype), with a draft manifest: the eval gate scores what will be served."""
    tensors = quantize(trained.tensors, request.adapter_dtype)
    manifest = AdapterManifest(
        twin_id=request.twin_id,
        version=request.version,
        base_fingerprint=spec.fingerprint,
        rank=request.rank,
        alpha=request.alpha,
        target_modules=tuple(sorted(request.targets)),
        dtype=request.adapter_dtype,
    )
    return LoadedAdapter(manifest, tensors)


def _manifest(
    request: RoundRequest, adapter: LoadedAdapter, result: RoundResult, seconds: float, peak_mb: float
) -> AdapterManifest:
    summary = {
        "steps": result.steps,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "current_accuracy": result.current_accuracy,
        "sensitive_accuracy": result.sensitive_accuracy,
        "records": result.records,
        "facts": result.facts,
        "train_examples": result.train_examples,
        "eval_examples": result.eval_examples,
        "stop_reason": result.stop_reason,
        "warm_start": result.warm_start,
        "tokens": result.tokens,
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_mb,
        "parity_max_abs": result.parity_max_abs,
        "lr": request.lr,
        "b_lr_ratio": request.b_lr_ratio,
        "epochs": request.epochs,
        "top_layers": request.top_layers,
        "seed": request.seed,
    }
    return replace(adapter.manifest, training={k: v for k, v in summary.items() if v is not None})


def _warm_start(
    request: RoundRequest, spec: ModelSpec, opts: TrainOptions
) -> tuple[dict[str, Array] | None, Path | None]:
    """The adapter in service (or the resume point) as the starting point (λ-periodic rounds
    accumulate), when it fits, and the artifact it came from (its version directory has its losses)."""
    if not request.warm_start:
        return None, None
    for source in (request.resume_adapter, request.current_adapter):  # gone or damaged: try the next
        if source is None:
            continue
        with contextlib.suppress(AdapterError):
            current = _training_state(Path(source), read_adapter(Path(source), spec), spec)
            man = current.manifest
            return warm_start_tensors(current.tensors, man.rank, man.alpha, opts, spec.n_layers), Path(source)
    return None, None


def _training_state(artifact: Path, adapter: LoadedAdapter, spec: ModelSpec) -> LoadedAdapter:
    """The full-precision tensors its round saved beside ``adapter``'s ``artifact``, when they are there
    and belong to it (same twin and version); else the adapter itself (already rounded to its dtype)."""
    path = artifact.with_name(TRAIN_STATE_NAME)
    if not path.exists():
        return adapter
    try:
        state = read_adapter(path, spec)
    except AdapterError:
        return adapter
    same = (state.manifest.twin_id, state.manifest.version) == (adapter.manifest.twin_id, adapter.manifest.version)
    return state if same else adapter


def _current_adapter(request: RoundRequest, spec: ModelSpec) -> tuple[LoadedAdapter | None, str]:
    if request.current_adapter is None:
        return None, ""
    try:
        return read_adapter(Path(request.current_adapter), spec), ""
    except AdapterError as exc:  # not comparable: judge on current_score (if any) and say so
        return None, f" (the adapter in service could not be re-scored: {type(exc).__name__})"


def _misses(score: Score) -> str:
    if not score.misses:
        return ""
    question, expected, got = score.misses[0]
    return f"; e.g. {question!r} -> {got!r}, expected {expected!r}"


def _failed(base: RoundResult, start: float, reason: str) -> RoundResult:
    return replace(base, status="failed", reason=reason, seconds=round(time.monotonic() - start, 2))


def _out_of_memory(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("can't allocate memory", "out of memory", "failed to allocate memory", "bad_alloc"))


def main(argv: list[str] | None = None) -> int:
    from edge.finetune.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
