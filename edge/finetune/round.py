"""One fine-tuning round, meant to run in a child process of the daemon.

    run_round(RoundRequest) -> RoundResult          (plain, picklable dataclasses)
    python -m edge.finetune.round --request REQ.json [--result RES.json] [--progress auto|bar|jsonl|none]

Phases (each reported through ``progress``)::

    dataset    static records -> one-way Q/A pairs -> tokens        too few facts -> "skipped"
    load       the base model, the warm start (adapter in service or resume point), the lower-layer cache
    train      LoRA on the train paraphrases (edge.finetune.train)
    reference  the exported tensors in PEFT on a few prompts (for the parity check)
    ---------  the CLI exec(2)s into a fresh process here (``edge.finetune.handoff``): no PyTorch after this
    eval       the ONNX engine: candidate in slot 1, the adapter in service in slot 2, same batches; the
               in-service adapter's own round's score when it was measured on the same questions
               (edge.finetune.eval_record), and that half of the eval's time goes to training
    gate       threshold and no regression against the adapter in service   else "rejected"
    export     write_adapter + loss curve into a staging directory, renamed to <out_dir>/v<version>;
               a rejected candidate goes to <out_dir>/candidates/v<version> instead: never served, but
               the next round may resume from it (``resume_adapter``), so progress accumulates
    prune      keep the newest ``keep_versions`` version directories (and the one in service)

Everything from eval on is :mod:`edge.finetune.finish`. ``run_round`` called in-process (tests, tools)
runs it in the same process unless it is given an ``exec_finish`` (what the CLI gives it: an exec).

The frozen lower layers' output is kept in ``<out_dir>/lower_cache.npz`` (edge.finetune.lower_store):
a catch-up round minutes later on the same facts skips that pass and spends the time training.

Only a staging directory is ever written before the final rename (``edge.finetune.versions``); it is
removed on any exit, and one left by a killed process is removed by the next round. Memory-cap hits
(MemoryError, a failed torch/ORT allocation) and model/adapter errors give a "failed" result; anything
else (an exception raised by the progress callback, KeyboardInterrupt) propagates after cleanup.
Peak RSS is the process's own, overall and per phase (``edge.finetune.memory``), both processes' when
the round exec'd: run a round in a fresh process for a meaningful number.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from edge.finetune import handoff as handoff_files
from edge.finetune.dataset import FactDataset, build_dataset
from edge.finetune.evaluate import Reference, peft_reference
from edge.finetune.finish import (
    ARTIFACT_NAME,
    CANDIDATES,
    KEEP_CANDIDATES,
    LOSS_CURVE,
    TRAIN_STATE_NAME,
    EvalPlan,
    candidate,
    eval_plan,
    failed,
    finish,
    guarded,
)
from edge.finetune.focus import FILE_NAME as EXAMPLE_LOSSES
from edge.finetune.focus import load_losses, save_losses
from edge.finetune.handoff import Handoff
from edge.finetune.lower_store import FILE_NAME as LOWER_CACHE
from edge.finetune.lower_store import LowerStore
from edge.finetune.memory import PhasePeaks, map_large_allocations, peak_vm_mb, release_memory
from edge.finetune.request import ProgressFn, RoundProgress, RoundRequest, RoundResult, Status
from edge.finetune.train import StepInfo, TrainOptions, TrainResult, load_model, train, warm_start_tensors
from edge.finetune.versions import remove_dead_staging, staging, versions
from shared.adapters import Array, LoadedAdapter, read_adapter, write_adapter
from shared.errors import AdapterError
from shared.modelspec import HF_DIR, ModelSpec, load_spec

__all__ = [
    "ARTIFACT_NAME",
    "CANDIDATES",
    "KEEP_CANDIDATES",
    "LOSS_CURVE",
    "TRAIN_STATE_NAME",
    "ExecFinish",
    "ProgressFn",
    "RoundProgress",
    "RoundRequest",
    "RoundResult",
    "Status",
    "run_round",
    "versions",
]

PARITY_ROWS = 4  # prompts in the PEFT-vs-ONNX parity sample
# Of the time a round keeps back for after training (1 - train_share), the part its eval takes when it
# scores two adapters (57 s of 90 s in the bench's catch-up rounds); scoring one gives half of it back.
_EVAL_PART = 2 / 3

# continues the round from the staging directory in another process (an exec); it returns only if it could not
ExecFinish = Callable[[Path], None]


def run_round(
    request: RoundRequest, progress: ProgressFn | None = None, exec_finish: ExecFinish | None = None
) -> RoundResult:
    """One complete round; never leaves a partial version directory behind. With ``exec_finish``, the
    part after training continues in the process it execs (the CLI's); if it returns, it continues here."""
    start = time.monotonic()
    base = RoundResult("failed", "", request.twin_id, request.version)
    peaks = PhasePeaks()
    forward = progress or (lambda _p: None)

    def report(p: RoundProgress) -> None:
        peaks.enter(p.phase)
        forward(p)

    result = guarded(lambda: _run(request, report, peaks, start, base, exec_finish), base, start, peaks)
    return replace(result, peak_vm_mb=peak_vm_mb())


def _run(
    request: RoundRequest,
    report: ProgressFn,
    peaks: PhasePeaks,
    start: float,
    base: RoundResult,
    exec_finish: ExecFinish | None,
) -> RoundResult:
    model_dir, out_dir = Path(request.model_dir), Path(request.out_dir)
    final = out_dir / f"v{request.version}"
    if final.exists():
        return failed(base, start, f"{final} already exists: versions are never overwritten")
    spec = load_spec(model_dir)
    missing = sorted(set(request.targets) - set(spec.targets))
    if missing:  # the gateway (and the eval gate's engine) could not serve it: say so before training
        return failed(
            base,
            start,
            f"targets {missing} are not in the serving graph of {model_dir.name} (it has {list(spec.target_modules)}); "
            f"prepare it with `llmtwin model prepare --base {spec.source} --max-rank {spec.max_rank} "
            f"--bank-dtype {spec.bank_dtype} --targets {','.join(request.targets)}` (and the gateway's model alike)",
        )
    report(RoundProgress("dataset", 0, 1, None, time.monotonic() - start))
    data = build_dataset(
        request.records, model_dir / spec.tokenizer_file, spec.eos_token_ids[0], request.reading_plan()
    )
    base = replace(
        base, records=data.records, facts=data.facts, train_examples=len(data.train), state_examples=data.readings
    )
    skip = _skip_reason(data, request.min_facts)
    if skip is not None:  # and no rows of facts that are gone stay on disk
        LowerStore(out_dir / LOWER_CACHE, spec.fingerprint).remove()
        return replace(base, status="skipped", reason=skip, seconds=time.monotonic() - start)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_dead_staging(out_dir)
    with staging(out_dir) as stage:
        plan = eval_plan(request, spec, data)
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
            return failed(base, start, "training diverged (non-finite loss)")
        adapter = candidate(request, spec, trained.tensors)
        # full precision: what the next phases score (rounded as served) and the next round resumes from
        write_adapter(stage / TRAIN_STATE_NAME, trained.tensors, replace(adapter.manifest, dtype="float32"))
        save_losses(stage / EXAMPLE_LOSSES, trained.example_losses)  # where the next round's epochs start
        reference = _reference(request, spec, plan, adapter, report, start)
        steps = trained.planned_steps
        del trained, adapter, data
        vm = peak_vm_mb()
        state = Handoff(request, start, base, steps, plan.drawn, peaks.snapshot(), peaks.supported, vm, reference)
        if exec_finish is not None:
            handoff_files.save(stage, state)
            exec_finish(stage)  # an exec does not return
            handoff_files.remove(stage)  # it did not happen: the round goes on here, without those files
        return finish(state, stage, report, peaks, plan)


def _reference(
    request: RoundRequest, spec: ModelSpec, plan: EvalPlan, adapter: LoadedAdapter, report: ProgressFn, start: float
) -> Reference:
    """PEFT's logits for the candidate on a few eval prompts: what the engine must reproduce (parity)."""
    map_large_allocations()
    report(RoundProgress("reference", 0, 1, None, time.monotonic() - start))
    prompts = [e.prompt for e in plan.sample[:PARITY_ROWS]]
    reference = peft_reference(Path(request.model_dir) / HF_DIR, adapter, spec.module_paths, prompts)
    release_memory()
    return reference


def _skip_reason(data: FactDataset, min_facts: int) -> str | None:
    if data.records == 0:
        return "no static records"
    if data.facts < min_facts or not data.heldout:
        return f"only {data.facts} askable static facts (from {data.records} records); a round needs {min_facts}"
    return None


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


def main(argv: list[str] | None = None, *, exec_eval: bool = False) -> int:
    """The CLI (edge.finetune.cli). ``exec_eval``: only in a process of its own, which the eval replaces."""
    from edge.finetune.cli import main as cli_main

    return cli_main(argv, exec_eval=exec_eval)


if __name__ == "__main__":
    raise SystemExit(main(exec_eval=True))
