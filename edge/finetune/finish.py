"""The second half of a fine-tuning round: eval, gate, export, publish, prune (no PyTorch).

    finish(handoff, stage, report, peaks) -> RoundResult      after training, in the same process
    finish_round(stage, progress) -> RoundResult               in the process the round exec'd into
                                                               (``python -m edge.finetune.round --finish``)

Both read the trained tensors from the staging directory (``train_state``, float32) and score them
as the gateway will decode them. Phases: ``eval`` (the ONNX engine; its load is the eval's), gate and
``export`` (see :mod:`edge.finetune.round` for the whole round).
"""

from __future__ import annotations

import json
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edge.finetune import handoff as handoff_files
from edge.finetune.dataset import Example, FactDataset, build_dataset, eval_sample
from edge.finetune.eval_record import FILE_NAME as EVAL_SCORE
from edge.finetune.eval_record import drawn_digest, load_score, sample_digest, save_score
from edge.finetune.evaluate import Score, check_parity, engine_accuracy, gate, reading_accuracy
from edge.finetune.handoff import Handoff, HandoffError
from edge.finetune.memory import PhasePeaks, map_large_allocations, peak_vm_mb
from edge.finetune.reading import floor
from edge.finetune.request import ProgressFn, RoundProgress, RoundRequest, RoundResult
from edge.finetune.versions import adopt, own_staging, prune, publish
from shared.adapter_codec import quantize
from shared.adapters import ARTIFACT_SUFFIX, AdapterManifest, Array, LoadedAdapter, read_adapter, write_adapter
from shared.errors import AdapterError, ModelError, TwinError
from shared.modelspec import ModelSpec, load_spec

ARTIFACT_NAME = "adapter" + ARTIFACT_SUFFIX
TRAIN_STATE_NAME = "train_state" + ARTIFACT_SUFFIX  # float32 tensors before rounding: resume point only
LOSS_CURVE = "loss_curve.json"
CANDIDATES = "candidates"  # <out_dir>/candidates/v<N>: rejected rounds' adapters, resume points only
KEEP_CANDIDATES = 2
_CANDIDATE_SLOT, _CURRENT_SLOT = 1, 2


@dataclass(frozen=True, slots=True)
class EvalPlan:
    sample: list[Example]  # the held-out questions both adapters are scored on
    checks: list[Example]  # state-reading questions the candidate is scored on (not gated)
    digest: str  # edge.finetune.eval_record.sample_digest of them
    current_known: float | None  # the in-service adapter's score on them, from its own round
    rescore: bool  # the eval scores the adapter in service too (there is one and its score is not known)
    drawn: str = ""  # drawn_digest of the sample and the checks: the fresh process must draw the same


def eval_plan(request: RoundRequest, spec: ModelSpec, data: FactDataset) -> EvalPlan:
    sample = eval_sample(data.heldout, per_fact=1, seed=request.seed, limit=request.eval_limit)
    digest = sample_digest(spec.fingerprint, sample)
    known = None
    if request.current_adapter is not None:
        known = load_score(Path(request.current_adapter).with_name(EVAL_SCORE), digest)
    checks = list(data.state_checks)
    rescore = request.current_adapter is not None and known is None
    return EvalPlan(sample, checks, digest, known, rescore, drawn_digest(spec.fingerprint, sample + checks))


def candidate(request: RoundRequest, spec: ModelSpec, tensors: dict[str, Array]) -> LoadedAdapter:
    """The trained tensors exactly as the gateway will decode them (rounded or quantized to the artifact's
    dtype), with a draft manifest: the eval gate scores what will be served."""
    manifest = AdapterManifest(
        twin_id=request.twin_id,
        version=request.version,
        base_fingerprint=spec.fingerprint,
        rank=request.rank,
        alpha=request.alpha,
        target_modules=tuple(sorted(request.targets)),
        dtype=request.adapter_dtype,
    )
    return LoadedAdapter(manifest, quantize(tensors, request.adapter_dtype))


def guarded(
    run: Callable[[], RoundResult], base: RoundResult, start: float, peaks: PhasePeaks, *, bugs: bool = False
) -> RoundResult:
    """``run()``, with memory-cap hits and model/adapter/file errors as a failed result, and the peaks.
    ``bugs``: any other exception too ("internal error", traceback on stderr), where nobody above would
    know the round's fields; else it propagates."""
    try:
        result = run()
    except MemoryError as exc:
        result = failed(base, start, f"memory cap hit: {exc or 'MemoryError'} (during {peaks.phase})")
    except RuntimeError as exc:
        if not _out_of_memory(exc):
            raise
        result = failed(base, start, f"memory cap hit: {str(exc).splitlines()[0][:200]} (during {peaks.phase})")
    except (TwinError, OSError) as exc:
        result = failed(base, start, f"{type(exc).__name__}: {exc}")
    except Exception as exc:
        if not bugs:
            raise
        traceback.print_exc()
        result = failed(base, start, f"internal error: {type(exc).__name__}: {exc}")
    phases = peaks.finish()
    return replace(result, peak_rss_mb=peaks.overall_mb(), peak_rss_by_phase=phases)


def failed(base: RoundResult, start: float, reason: str) -> RoundResult:
    return replace(base, status="failed", reason=reason, seconds=round(time.monotonic() - start, 2))


def finish_round(stage: Path, progress: ProgressFn | None = None) -> RoundResult:
    """The round whose training left its hand-over in ``stage``: this process was exec'd in its place
    (same pid, so ``stage`` carries this pid's name; any other directory is refused and left alone).
    SIGTERM, blocked across the exec by the process before (``edge.finetune.cli``), is let in once the
    staging directory is owned here: one sent meanwhile unwinds and removes it."""
    if not own_staging(stage):
        return RoundResult("failed", f"{stage}: not a staging directory of this process; left alone", "", 0)
    with adopt(stage):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        try:
            handoff = handoff_files.load(stage)
        except HandoffError as exc:
            return RoundResult("failed", str(exc), "", 0)
        peaks = PhasePeaks("eval", handoff.peaks, handoff.peaks_supported)
        forward = progress or (lambda _p: None)

        def report(p: RoundProgress) -> None:
            peaks.enter(p.phase)
            forward(p)

        # a bug is still reported as this round's own result, training and all
        result = guarded(lambda: finish(handoff, stage, report, peaks), handoff.base, handoff.start, peaks, bugs=True)
    vm = [v for v in (handoff.peak_vm_mb, peak_vm_mb()) if v is not None]
    return replace(result, peak_vm_mb=max(vm) if vm else None, fresh_eval=True)


def finish(
    handoff: Handoff, stage: Path, report: ProgressFn, peaks: PhasePeaks, plan: EvalPlan | None = None
) -> RoundResult:
    """Score the candidate in ``stage``, gate it, write its artifacts and publish the directory: as a
    version when accepted, as a resume point under ``candidates/`` when the gate refused it. ``plan``:
    the eval's questions, when this process already has them (else they are drawn again, the same)."""
    request, start = handoff.request, handoff.start
    model_dir, out_dir = Path(request.model_dir), Path(request.out_dir)
    spec = load_spec(model_dir)
    if plan is None:
        data = build_dataset(
            request.records, model_dir / spec.tokenizer_file, spec.eos_token_ids[0], request.reading_plan()
        )
        plan = eval_plan(request, spec, data)
        del data
        if plan.drawn != handoff.eval_digest:  # the same request must draw the same questions
            raise ModelError(f"the eval's questions drawn after the exec differ from training's ({plan.drawn[:12]})")
    # after an exec the phase is "eval" from the start; the engine's load is the eval's either way
    report(RoundProgress("eval", 0, len(plan.sample) + 2 * len(plan.checks), None, time.monotonic() - start))
    tensors = dict(read_adapter(stage / TRAIN_STATE_NAME, spec).tensors)
    adapter = candidate(request, spec, tensors)
    base, score, note = _evaluate(handoff, spec, plan, adapter, report)
    ok, why = gate(round(score.accuracy, 4), request.eval_threshold, base.current_accuracy)
    if base.state_accuracy is not None:  # reported beside the gate's reason, not gated on
        why += (
            f"; state questions {base.state_accuracy:.3f} (base model {base.state_accuracy_base or 0:.3f}, "
            f"one constant yes/no answer {base.state_accuracy_floor or 0:.3f})"
        )
    report(RoundProgress("export", 0, 1, None, time.monotonic() - start))
    manifest = _manifest(request, adapter, base, time.monotonic() - start, peaks.overall_mb())
    # encoded from the trained tensors: decoding gives exactly the quantize()d values that were scored
    write_adapter(stage / ARTIFACT_NAME, tensors, manifest)
    # full precision beside it, never uploaded: the next round resumes from this, not from the rounded copy
    write_adapter(stage / TRAIN_STATE_NAME, tensors, replace(manifest, dtype="float32"))
    save_score(stage / EVAL_SCORE, plan.digest, score.accuracy, score.n)  # the next round's in-service score
    if ok:
        result = _accept(handoff, stage, base, why + note)
        prune(out_dir, request.keep_versions, request.current_adapter)
    else:  # kept as a candidate: training progress carries over to the next round
        checkpoint = out_dir / CANDIDATES / f"v{request.version}" / ARTIFACT_NAME
        checkpoint.parent.parent.mkdir(exist_ok=True)
        publish(stage, checkpoint.parent)
        reason = why + note + _misses(score)
        result = replace(base, status="rejected", reason=reason, checkpoint_path=str(checkpoint))
        prune(out_dir / CANDIDATES, KEEP_CANDIDATES, request.resume_adapter)
    return replace(result, seconds=round(time.monotonic() - start, 2))


def _accept(handoff: Handoff, stage: Path, base: RoundResult, reason: str) -> RoundResult:
    curve = {"losses": list(base.loss_curve), "stop_reason": base.stop_reason, "planned_steps": handoff.planned_steps}
    (stage / LOSS_CURVE).write_text(json.dumps(curve) + "\n", encoding="utf-8")
    size = (stage / ARTIFACT_NAME).stat().st_size
    final = Path(handoff.request.out_dir) / f"v{handoff.request.version}"
    publish(stage, final)
    return replace(base, status="accepted", reason=reason, adapter_path=str(final / ARTIFACT_NAME), adapter_bytes=size)


def _evaluate(
    handoff: Handoff, spec: ModelSpec, plan: EvalPlan, adapter: LoadedAdapter, report: ProgressFn
) -> tuple[RoundResult, Score, str]:
    """Parity, then held-out accuracy of the candidate (and of the adapter in service) on the engine."""
    from gateway.engine import Engine, EngineOptions

    request, start = handoff.request, handoff.start
    map_large_allocations()
    eval_start = time.monotonic()
    engine = Engine(Path(request.model_dir), EngineOptions(threads=request.threads, slots=3, max_batch=64))
    if engine.bank is None:
        raise ModelError(f"{request.model_dir}: the serving graph has no adapter bank inputs")
    engine.bank.load(_CANDIDATE_SLOT, adapter)
    parity = check_parity(engine, _CANDIDATE_SLOT, handoff.reference)
    slots = {"candidate": _CANDIDATE_SLOT}
    current, note = _current_adapter(request, spec) if plan.rescore else (None, "")
    if current is not None:
        engine.bank.load(_CURRENT_SLOT, current)
        slots["current"] = _CURRENT_SLOT

    rows = len(plan.sample) * len(slots) + 2 * len(plan.checks)

    def on_batch(done: int, _total: int, offset: int = 0) -> None:
        report(RoundProgress("eval", offset + done, rows, None, time.monotonic() - start))

    scores = engine_accuracy(engine, slots, plan.sample, on_batch)
    score = scores["candidate"]
    offset = len(plan.sample) * len(slots)
    reading = reading_accuracy(
        engine, {"candidate": _CANDIDATE_SLOT, "base": 0}, plan.checks, lambda d, t: on_batch(d, t, offset)
    )
    current_acc = scores["current"].accuracy if "current" in scores else plan.current_known
    if current_acc is None:
        current_acc = request.current_score
    base = replace(
        handoff.base,
        accuracy=round(score.accuracy, 4),
        current_accuracy=None if current_acc is None else round(current_acc, 4),
        sensitive_accuracy=None if score.sensitive_accuracy is None else round(score.sensitive_accuracy, 4),
        state_accuracy=_rounded(reading.get("candidate")),
        state_accuracy_base=_rounded(reading.get("base")),
        state_accuracy_floor=_rounded(floor(e.expect for e in plan.checks if e.expect is not None)),
        state_eval_examples=len(plan.checks),
        eval_examples=score.n,
        eval_s=round(time.monotonic() - eval_start, 2),
        parity_max_abs=parity,
    )
    return base, score, note


def _manifest(
    request: RoundRequest, adapter: LoadedAdapter, result: RoundResult, seconds: float, peak_mb: float
) -> AdapterManifest:
    summary = {
        "steps": result.steps,
        "loss": result.loss,
        "accuracy": result.accuracy,
        "current_accuracy": result.current_accuracy,
        "sensitive_accuracy": result.sensitive_accuracy,
        "state_accuracy": result.state_accuracy,
        "state_accuracy_base": result.state_accuracy_base,
        "state_accuracy_floor": result.state_accuracy_floor,
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


def _current_adapter(request: RoundRequest, spec: ModelSpec) -> tuple[LoadedAdapter | None, str]:
    if request.current_adapter is None:
        return None, ""
    try:
        return read_adapter(Path(request.current_adapter), spec), ""
    except AdapterError as exc:  # not comparable: judge on current_score (if any) and say so
        return None, f" (the adapter in service could not be re-scored: {type(exc).__name__})"


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _misses(score: Score) -> str:
    if not score.misses:
        return ""
    question, expected, got = score.misses[0]
    return f"; e.g. {question!r} -> {got!r}, expected {expected!r}"


def _out_of_memory(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return any(s in text for s in ("can't allocate memory", "out of memory", "failed to allocate memory", "bad_alloc"))
