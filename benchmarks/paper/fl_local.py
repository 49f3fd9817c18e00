"""Training steps of one edge update, timed in a fresh child process: a FedAvg local round (every weight
of the model, AdamW) or the LoRA round's own loop, on the same tokenised data and batches.

    python -m benchmarks.paper.fl_local --request REQ.json        (writes REQ.result.json)

``mode = "full"`` (FedAvg's local step): the model from ``edge.finetune.weights.load_causal_lm``, every
parameter trainable, ``torch.optim.AdamW`` over all of them, gradient clipping as the LoRA round. The
forward is the LoRA round's own (``edge.finetune.train.batch_loss``) with every layer trained: the
shared prompt prefix runs once per step and the LM head sees only the answer positions, so the baseline
gets every saving that does not depend on freezing layers::

    prefix_h = embed(prefix [1, P])   rows_h = embed(batch.tokens [B, S])     (with grad)
    loss     = batch_loss(decoder, lm_head, first=0, prefix_h, rows_h, batch)

``mode = "lora"``: ``edge.finetune.train.train`` itself (PEFT LoRA on the top layers, lower layers run
once per example) for ``warmup + steps`` steps, timed through its progress callback.

Batches: ``edge.finetune.dataset.epoch_batches`` with the recipe's batch size and token cap, the same
seeded order in both modes. The first ``warmup`` steps are not timed (allocator and thread-pool warm-up);
``steps`` after them are. ``epoch_steps`` / ``epoch_tokens`` describe one full pass over the training
questions (with the round's state readings when ``state_share`` > 0, as the round trains), for the
caller's extrapolation. Peak RSS is this process's own (VmHWM, see :func:`peak_rss_mb`).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from benchmarks.finetune import home_records
from edge.finetune.dataset import FactDataset, ReadingPlan, build_dataset, epoch_batches, make_batch
from edge.finetune.memory import peak_rss_mb
from edge.finetune.train import StepInfo, TrainOptions, batch_loss, load_model, train
from edge.finetune.weights import load_causal_lm
from shared.modelspec import HF_DIR, load_spec

Mode = Literal["full", "lora"]


@dataclass(frozen=True, slots=True)
class StepRequest:
    mode: Mode
    model_dir: str
    home: int  # 1-based home of generate(seed, n_homes): the same static records as its LoRA round
    seed: int = 7
    n_homes: int = 3
    warmup: int = 2
    steps: int = 8
    threads: int = 2
    lr: float = 5e-5  # full-weight fine-tuning rate; the value does not change a step's cost
    state_share: float = 0.0  # the round's state readings (RoundRequest.state_share): the same data as it
    state_checks: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StepRequest:
        return cls(**json.loads(text))


@dataclass(frozen=True, slots=True)
class StepResult:
    mode: Mode
    load_s: float  # model load (and for LoRA the PEFT wrapping) before the first step
    step_s: list[float]  # every timed step's wall seconds
    step_tokens: list[int]  # token positions of each timed step (prefix once + padded rows, as train counts)
    epoch_steps: int  # steps of one pass over the training questions
    epoch_tokens: int  # token positions of that pass
    train_examples: int
    batch_size: int
    parameters: int  # parameters updated by the optimizer
    peak_rss_mb: float

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> StepResult:
        return cls(**json.loads(text))


def epoch_plan(data: FactDataset, opts: TrainOptions, seed: int) -> list[list[int]]:
    """One seeded pass of batches (indices into ``data.train``), as ``train`` draws its first epoch."""
    return epoch_batches(data.train, len(data.prefix), opts.batch_size, random.Random(seed), opts.max_batch_tokens)


def batch_tokens(data: FactDataset, rows: Sequence[int]) -> int:
    """Token positions of one step, counted as ``train`` counts them (prefix once + padded rows)."""
    pad = data.train[0].answer[-1]
    return len(data.prefix) + int(make_batch([data.train[i] for i in rows], len(data.prefix), pad).tokens.size)


def run(request: StepRequest) -> StepResult:
    import torch

    torch.set_num_threads(request.threads)
    torch.manual_seed(request.seed)
    model_dir = Path(request.model_dir)
    spec = load_spec(model_dir)
    reading = ReadingPlan(f"home{request.home}", request.state_share, request.state_checks, request.seed)
    data = build_dataset(
        home_records(request.seed, request.n_homes, request.home),
        model_dir / spec.tokenizer_file,
        spec.eos_token_ids[0],
        reading if request.state_share > 0 else None,
    )
    opts = TrainOptions(threads=request.threads, seed=request.seed)
    plan = epoch_plan(data, opts, request.seed)
    epoch_tokens = sum(batch_tokens(data, rows) for rows in plan)
    runner = _full_steps if request.mode == "full" else _lora_steps
    load_s, times, tokens, params = runner(model_dir, data, opts, request)
    peak_mb = peak_rss_mb()
    return StepResult(
        request.mode,
        round(load_s, 3),
        times,
        tokens,
        len(plan),
        epoch_tokens,
        len(data.train),
        opts.batch_size,
        params,
        peak_mb,
    )


def _full_steps(
    model_dir: Path, data: FactDataset, opts: TrainOptions, request: StepRequest
) -> tuple[float, list[float], list[int], int]:
    import torch

    start = time.perf_counter()
    model = load_causal_lm(model_dir / HF_DIR).train()
    decoder, lm_head = model.model, model.lm_head
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=request.lr)
    load_s = time.perf_counter() - start
    rng = random.Random(request.seed)
    pad = data.train[0].answer[-1]
    queue: list[list[int]] = []
    prefix = torch.tensor([list(data.prefix)])  # [1, P]
    times: list[float] = []
    tokens: list[int] = []
    for step in range(request.warmup + request.steps):
        if not queue:
            queue = epoch_batches(data.train, len(data.prefix), opts.batch_size, rng, opts.max_batch_tokens)
        rows = queue.pop()
        batch = make_batch([data.train[i] for i in rows], len(data.prefix), pad)
        began = time.perf_counter()
        prefix_h = decoder.embed_tokens(prefix)  # [1, P, H]
        rows_h = decoder.embed_tokens(torch.from_numpy(batch.tokens))  # [B, S, H]
        loss = batch_loss(decoder, lm_head, 0, prefix_h, rows_h, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, opts.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= request.warmup:
            times.append(round(time.perf_counter() - began, 4))
            tokens.append(len(data.prefix) + int(batch.tokens.size))
    return load_s, times, tokens, sum(p.numel() for p in params)


def _lora_steps(
    model_dir: Path, data: FactDataset, opts: TrainOptions, request: StepRequest
) -> tuple[float, list[float], list[int], int]:
    start = time.perf_counter()
    model = load_model(model_dir / HF_DIR, opts)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    load_s = time.perf_counter() - start
    total = request.warmup + request.steps
    run_opts = TrainOptions(
        threads=opts.threads, seed=opts.seed, max_steps=total, epochs=1000.0, max_time_s=1e9, patience=10**6
    )
    ends: list[float] = []
    train(model, data, run_opts, progress=lambda info: _mark(ends, info))
    # train draws its batches from the same seeded generator: replay it for the token counts
    rng = random.Random(run_opts.seed)
    queue: list[list[int]] = []
    counts = []
    for _ in range(total):
        if not queue:
            queue = epoch_batches(data.train, len(data.prefix), opts.batch_size, rng, opts.max_batch_tokens)
        counts.append(batch_tokens(data, queue.pop()))
    times = [round(b - a, 4) for a, b in zip(ends[request.warmup - 1 : -1], ends[request.warmup :], strict=True)]
    if request.warmup == 0:
        times = [round(ends[0], 4), *times]
    return load_s, times, counts[request.warmup :], params


def _mark(ends: list[float], info: StepInfo) -> None:
    ends.append(info.elapsed_s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper.fl_local")
    parser.add_argument("--request", type=Path, required=True)
    args = parser.parse_args(argv)
    path: Path = args.request
    result = run(StepRequest.from_json(path.read_text(encoding="utf-8")))
    path.with_name(path.stem + ".result.json").write_text(result.to_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
