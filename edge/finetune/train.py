"""LoRA fine-tuning on a :class:`~edge.finetune.dataset.FactDataset`: torch + PEFT on CPU, bounded time.

LoRA sits on the top ``top_layers`` fraction of the decoder (layers ``first..n-1``); the layers below are
frozen and LoRA-free, so their output for a given token sequence never changes during the round. We
run them once per example (:class:`LowerCache`), keep the hidden states entering layer ``first`` and
free those layers once every example has been through; each step runs the top layers::

    once:   prefix_h = lower(prefix [1, P])                         [1, P, H]   (the shared system prompt)
            rows_h   = lower(suffix_i | prefix), first use of each   [S_i, H]    (question + answer tokens)
    step:   top(prefix_h)          -> K/V of the prefix per top layer [1, kv_heads, P, head_dim], with grad
            h = top(rows_h [B, S, H] attending to prefix K/V + causal)  [B, S, H]
            logits = lm_head(norm(h)[answer positions])               [N, vocab]   N answer tokens, not B * S
            loss = mean cross-entropy over the N answer tokens          (each example's own mean kept too)

The shared prefix runs once per step instead of once per row, and the 49,152-wide lm_head only on answer
positions. Epochs are drawn (:mod:`edge.finetune.focus`): an example the adapter already answers with a
low loss comes back less often, so the steps go to the facts not yet learned (numbers, mostly). Only the
LoRA A/B matrices require grad. Everything here is a plain function of the seed and the step (LoRA init,
batch order, learning-rate schedule) unless the time budget binds: then, after the warmup, the learning
rate decays over the *time* left (the fraction of the budget spent, not of the steps planned) and the
loop runs until the budget is spent, so a slow start (the lower layers' first passes, a busy machine)
does not cut the round short; where a run stops then depends on the machine's speed. Early stop
(:class:`EarlyStop`) when the mean loss over the last epoch falls below ``min_loss`` or has not
improved by 2% for an epoch (at least ``patience`` steps).
"""

from __future__ import annotations

import gc
import importlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from edge.finetune.dataset import IGNORE, Batch, Example, FactDataset, epoch_batches, make_batch
from edge.finetune.focus import visit_share
from edge.finetune.lower_store import LowerStore, row_key
from edge.finetune.weights import load_causal_lm
from edge.model.runtime import quiet_libraries
from shared.adapters import Array
from shared.modelspec import DEFAULT_LORA_TARGETS, lora_a_name, lora_b_name

StopReason = Literal["converged", "plateau", "max_steps", "max_time"]
_PLATEAU_GAIN = 0.98  # "improved" = smoothed loss below 98% of the best so far


@dataclass(frozen=True, slots=True)
class TrainOptions:
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    lr: float = 2e-3  # measured with the default targets: 1e-3 and 5e-3 both learned less in the same time
    b_lr_ratio: float = 4.0  # LoRA+: the B matrices' learning rate is this multiple of ``lr``
    batch_size: int = 8
    max_batch_tokens: int = 256  # rows x padded width of one step (bounds its activation memory)
    epochs: float = 10.0  # planned passes over the train examples: the LR schedule spans them
    max_steps: int = 1000
    max_time_s: float = 300.0  # for the loop; when it binds, the LR schedule is fitted to it
    warmup_steps: int = 10
    max_grad_norm: float = 1.0  # clip the LoRA gradients' global norm to this (0: no clipping)
    patience: int = 60
    min_loss: float = 0.005
    focus_loss: float = 0.2  # an epoch draws an example whose last loss is below this with odds loss/focus_loss,
    min_visit: float = 0.2  # but at least these (edge.finetune.focus; focus_loss 0: every example, every epoch)
    top_layers: float = 0.2  # LoRA on this top fraction of the layers; the rest run once per example
    threads: int = 2
    seed: int = 0


@dataclass(frozen=True, slots=True)
class StepInfo:
    """What a progress callback gets after every step (the daemon's STATUS, a progress bar)."""

    step: int
    planned_steps: int
    loss: float
    elapsed_s: float


Progress = Callable[[StepInfo], None]


@dataclass(frozen=True)
class TrainResult:
    tensors: dict[str, Array]  # artifact layout: lora_A.{i}.{m} [d_in, r], lora_B.{i}.{m} [r, d_out], fp32
    losses: list[float] = field(repr=False)  # one per step
    steps: int
    planned_steps: int
    stop_reason: StopReason
    seconds: float  # the loop, lower-layer passes included
    cache_seconds: float  # of which: the lower layers (each example once)
    tokens: int  # token positions through the top layers (prefix once per step + padded rows)
    reused_rows: int = 0  # examples whose lower-layer output came from the previous round's store
    losses_known: int = 0  # examples whose loss at the start came in ``example_losses`` (edge.finetune.focus)
    example_losses: dict[bytes, float] = field(default_factory=dict, repr=False)  # row key -> loss at last visit

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return sum(tail) / len(tail) if tail else math.nan


def load_model(hf_dir: Path, opts: TrainOptions, init: Mapping[str, Array] | None = None) -> Any:
    """The base as a PEFT model with LoRA on the top layers' targets, all base weights frozen.

    ``init``: LoRA tensors in the artifact layout to start from (a warm start from the adapter in
    service; same rank and scale, see :func:`warm_start_tensors`) instead of PEFT's A random, B zero."""
    import torch

    torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)  # LoRA A init
    peft: Any = importlib.import_module("peft")
    base = load_causal_lm(hf_dir)
    with quiet_libraries():
        n_layers = int(base.config.num_hidden_layers)
        config = peft.LoraConfig(
            r=opts.rank,
            lora_alpha=opts.alpha,
            target_modules=list(opts.targets),
            lora_dropout=0.0,
            bias="none",
            layers_to_transform=list(range(first_lora_layer(n_layers, opts.top_layers), n_layers)),
        )
        model = peft.get_peft_model(base, config)
    if init is not None:
        with torch.no_grad():
            for (layer, module_name), (a, b) in _lora_modules(model, opts.targets).items():
                a.copy_(torch.from_numpy(np.ascontiguousarray(init[lora_a_name(layer, module_name)].T)))  # [r, d_in]
                b.copy_(torch.from_numpy(np.ascontiguousarray(init[lora_b_name(layer, module_name)].T)))  # [d_out, r]
    return model.train()


def warm_start_tensors(
    tensors: Mapping[str, Array], rank: int, alpha: float, opts: TrainOptions, n_layers: int
) -> dict[str, Array] | None:
    """An existing adapter's tensors as a starting point for ``opts``, or None where it cannot be one:
    another rank or targets, or LoRA below the layers ``opts`` trains. B is rescaled to ``opts.alpha``."""
    first = first_lora_layer(n_layers, opts.top_layers)
    names = {f"lora_{k}.{i}.{m}" for k in "AB" for i in range(n_layers) for m in opts.targets}
    if rank != opts.rank or set(tensors) != names:
        return None
    if any(np.any(tensors[lora_b_name(i, m)]) for i in range(first) for m in opts.targets):
        return None
    rescale = (alpha / rank) / (opts.alpha / opts.rank)  # same delta W = scale * A @ B under the new alpha
    return {
        name: (value.astype(np.float32) * (rescale if name.startswith("lora_B") else 1.0)).astype(np.float32)
        for name, value in tensors.items()
    }


def first_lora_layer(n_layers: int, top_layers: float) -> int:
    return n_layers - max(1, min(n_layers, round(top_layers * n_layers)))


# ------------------------------------------------------------------------------------------------
# the training loop


def train(
    model: Any,
    data: FactDataset,
    opts: TrainOptions,
    progress: Progress | None = None,
    store: LowerStore | None = None,
    example_losses: Mapping[bytes, float] | None = None,
) -> TrainResult:
    """Fine-tune ``model`` (from :func:`load_model`) in place; an exception from ``progress`` aborts.

    ``store``: where the lower layers' output is kept between rounds (read first, rewritten when this
    round computed rows). ``example_losses``: by row key, each example's loss when the round that made
    ``model``'s starting adapter last trained on it (edge.finetune.focus), so the first epoch already
    visits less of what it knows. The model is spent afterwards: its lower layers are dropped once their
    output is cached."""
    import torch

    decoder = model.base_model.model.model  # LlamaModel under PEFT: embed_tokens, layers, norm, rotary_emb
    lm_head = model.base_model.model.lm_head
    first = first_lora_layer(len(decoder.layers), opts.top_layers)
    known = store.load(first, data.prefix) if store is not None else {}
    lower = LowerCache(decoder, first, data.prefix, data.train, known)
    reused = len(data.train) - lower.missing
    stale = len(known) > reused  # rows of examples that are gone (a fact changed or was removed)
    del known
    prefix_h = lower.prefix_h  # [1, P, H]

    # LoRA+ (Hayou et al., 2024): B learns faster than A; each group's lr is a multiple of the schedule
    lora_a = [p for n, p in model.named_parameters() if p.requires_grad and "lora_A" in n]
    lora_b = [p for n, p in model.named_parameters() if p.requires_grad and "lora_A" not in n]
    optimizer = torch.optim.AdamW(
        [{"params": lora_a, "scale": 1.0}, {"params": lora_b, "scale": opts.b_lr_ratio}], lr=opts.lr, weight_decay=0.0
    )
    rng = random.Random(opts.seed)
    pad_id = data.train[0].answer[-1]  # eos: padded positions carry no loss anyway
    keys = [row_key(_suffix(e, len(data.prefix))) for e in data.train]
    seen: list[float | None] = [(example_losses or {}).get(k) for k in keys]  # each example's loss at its last visit
    known_at_start = sum(v is not None for v in seen)
    full = epoch_batches(data.train, len(data.prefix), opts.batch_size, random.Random(opts.seed), opts.max_batch_tokens)
    steps_per_epoch = len(full)  # of an epoch that takes every example
    queue: list[list[int]] = []
    planned = max(1, min(opts.max_steps, math.ceil(opts.epochs * steps_per_epoch)))
    losses: list[float] = []
    early = EarlyStop(window=steps_per_epoch, patience=max(opts.patience, steps_per_epoch), min_loss=opts.min_loss)
    tokens, start = 0, time.monotonic()
    stop: StopReason = "max_steps"
    step = 0
    by_time = False  # once the time budget binds, the schedule follows elapsed time instead of steps
    while step < planned:
        step += 1
        if not queue:
            keep = [visit_share(v, opts.focus_loss, opts.min_visit) for v in seen]
            queue = epoch_batches(data.train, len(data.prefix), opts.batch_size, rng, opts.max_batch_tokens, keep)
        rows = queue.pop()
        batch = make_batch([data.train[i] for i in rows], len(data.prefix), pad_id)
        now_lr = lr_at_fraction(_elapsed_share(start, opts), opts) if by_time else lr_at(step, planned, opts)
        for group in optimizer.param_groups:
            group["lr"] = now_lr * group["scale"]
        loss, per_example = answer_losses(decoder, lm_head, first, prefix_h, lower.batch(rows), batch)
        for i, value in zip(rows, per_example.tolist(), strict=True):
            seen[i] = value
        loss.backward()
        if opts.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(lora_a + lora_b, opts.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        value = float(loss.detach())
        losses.append(value)
        tokens += prefix_h.shape[1] + batch.tokens.size
        elapsed = time.monotonic() - start
        if step == opts.warmup_steps and elapsed > 0 and int(opts.max_time_s * step / elapsed) < planned:
            by_time, stop = True, "max_time"  # the budget binds: decay the LR over the time left
        if by_time:  # steps that fit at the pace so far (for progress; the loop ends on time)
            shown = min(planned, max(step + 1, round(step * opts.max_time_s / max(elapsed, 1e-9))))
        if progress is not None:
            progress(StepInfo(step, shown if by_time else planned, value, elapsed))
        if not math.isfinite(value):
            break  # diverged: the caller sees a non-finite final loss
        verdict = early.update(step, value)
        if verdict is None and elapsed >= opts.max_time_s and step < planned:
            verdict = "max_time"
        if verdict is not None:
            stop = verdict
            break
    del optimizer
    gc.collect()
    tensors = adapter_tensors(model, opts.targets, opts.rank)
    seconds = time.monotonic() - start
    if store is not None and (lower.computed or stale):
        try:
            store.save(first, data.prefix, lower.known_rows())
        except Exception:  # a cache: a full disk or no memory left for the copy must not fail a trained round
            store.remove()
    planned = len(losses) if by_time else planned
    measured = {k: v for k, v in zip(keys, seen, strict=True) if v is not None}
    return TrainResult(
        tensors, losses, len(losses), planned, stop, seconds, lower.seconds, tokens, reused, known_at_start, measured
    )


class EarlyStop:
    """Watches the mean loss of the last ``window`` steps (an epoch: every example once, so batch
    noise averages out): "converged" below ``min_loss``, "plateau" after ``patience`` steps without
    a 2% improvement on the best such mean."""

    def __init__(self, window: int, patience: int, min_loss: float) -> None:
        self.window, self.patience, self.min_loss = window, patience, min_loss
        self.recent: list[float] = []
        self.best, self.best_step = math.inf, 0

    def update(self, step: int, loss: float) -> StopReason | None:
        self.recent = [*self.recent[-(self.window - 1) :], loss] if self.window > 1 else [loss]
        if len(self.recent) < self.window:
            return None
        mean = sum(self.recent) / len(self.recent)
        if mean < self.best * _PLATEAU_GAIN:
            self.best, self.best_step = mean, step
        if mean < self.min_loss:
            return "converged"
        if step - self.best_step >= self.patience:
            return "plateau"
        return None


def lr_at(step: int, planned: int, opts: TrainOptions) -> float:
    """Linear warmup, then cosine decay to 10% of the peak at the planned last step."""
    if step <= opts.warmup_steps:
        return opts.lr * step / opts.warmup_steps
    return lr_at_fraction((step - opts.warmup_steps) / max(1, planned - opts.warmup_steps), opts)


def lr_at_fraction(progress: float, opts: TrainOptions) -> float:
    """The cosine part of the schedule, ``progress`` in [0, 1] (beyond 1: stays at 10% of the peak)."""
    return opts.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


def _elapsed_share(start: float, opts: TrainOptions) -> float:
    return (time.monotonic() - start) / opts.max_time_s if opts.max_time_s > 0 else 1.0


# ------------------------------------------------------------------------------------------------
# the forward pass


class PrefixKV:
    """A duck-typed cache for LlamaAttention: the first call per layer (the prefix pass) records K/V,
    the second (the rows) gets them expanded to its batch and prepended to its own."""

    def __init__(self) -> None:
        self.kv: dict[int, tuple[Any, Any]] = {}

    def update(self, key: Any, value: Any, layer_idx: int, cache_kwargs: Any = None) -> tuple[Any, Any]:
        import torch

        if layer_idx not in self.kv:
            self.kv[layer_idx] = (key, value)  # [1, kv_heads, P, head_dim]
            return key, value
        pk, pv = self.kv[layer_idx]
        rows = key.shape[0]
        return (
            torch.cat([pk.expand(rows, -1, -1, -1), key], dim=-2),  # [B, kv_heads, P + S, head_dim]
            torch.cat([pv.expand(rows, -1, -1, -1), value], dim=-2),
        )


def run_layers(decoder: Any, layers: Sequence[Any], hidden: Any, offset: int, kv: PrefixKV) -> Any:
    """``hidden`` [B, S, H] at positions offset..offset+S-1 through ``layers``: causal, and attending
    to all ``offset`` prefix positions held in ``kv`` (none when offset is 0)."""
    import torch

    rows, width = hidden.shape[0], hidden.shape[1]
    positions = torch.arange(offset, offset + width).unsqueeze(0).expand(rows, -1)  # [B, S]
    mask = None  # offset 0: plain causal attention (SDPA's is_causal)
    if offset:
        mask = torch.ones(width, offset + width, dtype=torch.bool).tril(diagonal=offset)[None, None]  # [1, 1, S, P+S]
    rope = decoder.rotary_emb(hidden, positions)
    for layer in layers:
        hidden = layer(
            hidden, attention_mask=mask, position_ids=positions, past_key_values=kv, position_embeddings=rope
        )
    return hidden


class LowerCache:
    """Hidden states entering layer ``first`` (after the frozen, LoRA-free lower layers): the prefix's
    [1, P, H] up front, each example's [S_i, H] the first time a batch uses it, kept from then on
    (in float16: half the memory, and exactly what :mod:`edge.finetune.lower_store` keeps on disk).
    ``known`` rows (a previous round's, by token sequence) are used as they are. Once every example
    has its row, the lower layers are dropped and their memory goes back (edge.finetune.weights). A
    round cut short by its time budget pays only for what it used."""

    def __init__(
        self,
        decoder: Any,
        first: int,
        prefix: Sequence[int],
        examples: Sequence[Example],
        known: Mapping[bytes, Array] | None = None,
    ) -> None:
        import torch

        start = time.monotonic()
        self.decoder, self.first, self.examples, self.prefix_len = decoder, first, examples, len(prefix)
        self.kv = PrefixKV()  # the prefix K/V of every lower layer
        with torch.no_grad():
            ids = torch.tensor([list(prefix)])
            self.prefix_h = run_layers(decoder, decoder.layers[:first], decoder.embed_tokens(ids), 0, self.kv)
        self.rows: list[Any] = [None] * len(examples)
        self.missing = len(examples)
        self.computed = 0  # rows this round had to run the lower layers for
        for i, example in enumerate(examples):
            suffix = _suffix(example, self.prefix_len)
            row = (known or {}).get(row_key(suffix))
            if row is not None and row.shape == (len(suffix), self.prefix_h.shape[-1]):
                self.rows[i] = torch.from_numpy(np.array(row, dtype=np.float16))  # a copy: the file's array goes
                self.missing -= 1
        self._drop_lower_if_done()
        self.seconds = time.monotonic() - start

    def batch(self, indices: Sequence[int]) -> Any:
        """The rows of ``indices``, right-padded with zeros into one float32 [B, S, H] tensor."""
        import torch

        todo = [i for i in indices if self.rows[i] is None]
        if todo:
            self._fill(todo)
        return torch.nn.utils.rnn.pad_sequence([self.rows[i] for i in indices], batch_first=True).float()

    def known_rows(self) -> dict[bytes, Array]:
        """:func:`~edge.finetune.lower_store.row_key` -> float16 [S, H] of every example that has a
        float16 row (for the next round)."""
        import torch

        pairs = zip(self.examples, self.rows, strict=True)
        return {
            row_key(_suffix(e, self.prefix_len)): row.numpy()
            for e, row in pairs
            if row is not None and row.dtype == torch.float16
        }

    def _fill(self, todo: Sequence[int]) -> None:
        import torch

        start = time.monotonic()
        seqs = [_suffix(self.examples[i], self.prefix_len) for i in todo]
        ids = torch.zeros(len(seqs), max(map(len, seqs)), dtype=torch.long)  # right padding: never attended
        for r, seq in enumerate(seqs):
            ids[r, : len(seq)] = torch.tensor(seq)
        kv = PrefixKV()
        kv.kv = self.kv.kv
        with torch.no_grad():
            lower = self.decoder.layers[: self.first]
            hidden = run_layers(self.decoder, lower, self.decoder.embed_tokens(ids), self.prefix_len, kv)  # [b, S, H]
        for r, i in enumerate(todo):
            row = hidden[r, : len(seqs[r])]
            half = row.to(torch.float16)
            self.rows[i] = half if bool(torch.isfinite(half).all()) else row.clone()  # float32 where float16 overflows
        self.missing -= len(todo)
        self.computed += len(todo)
        self._drop_lower_if_done()
        self.seconds += time.monotonic() - start

    def _drop_lower_if_done(self) -> None:
        import torch

        if self.missing == 0:  # never run again this round
            self.kv.kv.clear()
            for layer in range(self.first):
                self.decoder.layers[layer] = torch.nn.Identity()


def _suffix(example: Example, prefix_len: int) -> tuple[int, ...]:
    """An example's tokens after the shared prefix: its question's rest, then the answer."""
    return (*example.prompt[prefix_len:], *example.answer)


def batch_loss(decoder: Any, lm_head: Any, first: int, prefix_h: Any, rows_h: Any, batch: Batch) -> Any:
    """Mean cross-entropy over every answer token of the batch (a scalar with grad)."""
    return answer_losses(decoder, lm_head, first, prefix_h, rows_h, batch)[0]


def answer_losses(decoder: Any, lm_head: Any, first: int, prefix_h: Any, rows_h: Any, batch: Batch) -> tuple[Any, Any]:
    """(mean cross-entropy over every answer token of the batch, with grad; each example's mean over its
    own answer tokens [B], detached). A token mean, not a mean of example means: a 12-token range answer
    has to get every digit right to count, and weighs 12 times a one-token answer."""
    import torch

    top = list(decoder.layers[first:])
    kv = PrefixKV()
    run_layers(decoder, top, prefix_h, 0, kv)  # records the prefix K/V of every top layer
    hidden = decoder.norm(run_layers(decoder, top, rows_h, prefix_h.shape[1], kv))  # [B, S, H]
    targets = torch.from_numpy(batch.targets)  # [B, S]
    where = targets != IGNORE
    logits = lm_head(hidden[where])  # [N, vocab]: answer positions only
    per_token = torch.nn.functional.cross_entropy(logits.float(), targets[where], reduction="none")  # [N]
    rows = where.nonzero()[:, 0]  # [N]: the example of each answer token
    per_example = torch.zeros(targets.shape[0]).index_add_(0, rows, per_token.detach()) / where.sum(dim=1)
    return per_token.mean(), per_example


# ------------------------------------------------------------------------------------------------
# the result


def adapter_tensors(model: Any, targets: tuple[str, ...], rank: int) -> dict[str, Array]:
    """The LoRA in the artifact layout (see shared.adapters), float32; layers without LoRA get zero
    A and B (the artifact holds every layer)."""
    trained = {
        key: (a.detach().float().numpy().T, b.detach().float().numpy().T)  # A [d_in, r], B [r, d_out]
        for key, (a, b) in _lora_modules(model, targets).items()
    }
    shapes = {m: (a.shape[0], b.shape[1]) for (_, m), (a, b) in trained.items()}  # every layer alike
    out: dict[str, Array] = {}
    for layer in range(int(model.base_model.model.config.num_hidden_layers)):
        for module_name in targets:
            d_in, d_out = shapes[module_name]
            a, b = trained.get((layer, module_name), (np.zeros((d_in, rank)), np.zeros((rank, d_out))))
            out[lora_a_name(layer, module_name)] = np.ascontiguousarray(a, dtype=np.float32)
            out[lora_b_name(layer, module_name)] = np.ascontiguousarray(b, dtype=np.float32)
    return out


def _lora_modules(model: Any, targets: tuple[str, ...]) -> dict[tuple[int, str], tuple[Any, Any]]:
    """(layer, target) -> the PEFT LoRA A weight [r, d_in] and B weight [d_out, r] parameters."""
    found = {}
    for name, module in model.named_modules():
        parts = name.split(".")
        if "layers" in parts and parts[-1] in targets and hasattr(module, "lora_A"):
            layer = int(parts[parts.index("layers") + 1])
            found[(layer, parts[-1])] = (module.lora_A["default"].weight, module.lora_B["default"].weight)
    return found
