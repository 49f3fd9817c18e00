"""Teacher-forced log-likelihoods of continuations under the base model, with or without a home's LoRA.

The attacks of ``benchmarks.paper.privacy`` need log p(answer | prompt) for many (prompt, answer) rows
that share a leading run of tokens (the system prompt; for a canary, the whole question). The shared
prefix runs once; its KV cache is broadcast over a batch of right-padded continuations::

    prefix  int [P]                   one forward, KV cache [1, kv_heads, P, head_dim] per layer
    rows    int [B, W] right-padded   forward on the expanded cache; causal attention, so the padding
                                      after a row's end never reaches that row's positions
    score   sum over a row's last n tokens of log softmax(lm_head(h[t-1]))[token t]

Only the scored positions go through the LM head (49k wide on SmolLM2). The model is torch + PEFT
(``edge.model.validate.to_peft``: the artifact's tensors, exactly as the parity check loads them);
:meth:`LikelihoodScorer.use` swaps a home's adapter in place or (``None``) disables it for the base.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from edge.finetune.weights import load_causal_lm
from edge.model.validate import to_peft
from shared.adapters import LoadedAdapter
from shared.modelspec import HF_DIR, ModelSpec

Row = tuple[Sequence[int], int]  # (tokens after the prefix, how many of its last tokens are scored)


class LikelihoodScorer:
    def __init__(
        self, model_dir: Path, spec: ModelSpec, *, threads: int = 2, batch_tokens: int = 4096, max_rows: int = 96
    ) -> None:
        import torch

        torch.set_num_threads(threads)
        self._spec = spec
        self._model: Any = load_causal_lm(model_dir / HF_DIR)
        self._peft: Any = None
        self._config: tuple[int, float, tuple[str, ...]] | None = None
        self._enabled = False
        self._batch_tokens = batch_tokens  # rows x widest row per forward: bigger batches run faster on CPU
        self._max_rows = max_rows  # ... but each row holds its own copy of the prefix's KV cache

    def use(self, adapter: LoadedAdapter | None) -> None:
        """Score with ``adapter`` from now on; ``None``: the base model alone."""
        if adapter is None:
            self._enabled = False
            return
        man = adapter.manifest
        config = (man.rank, man.alpha, tuple(sorted(man.target_modules)))
        if self._peft is not None and config != self._config:
            self._model = self._peft.unload()  # another LoRA shape: wrap the plain model again
            self._peft = None
        if self._peft is None:
            self._peft = to_peft(self._model, adapter, self._spec.module_paths)
        else:
            _copy_lora(self._peft, adapter, self._spec)
        self._config, self._enabled = config, True

    def score(self, prefix: Sequence[int], rows: Sequence[Row]) -> list[float]:
        """Sum of log-probabilities of each row's last ``n`` tokens, given ``prefix`` + the row before them."""
        import torch

        for tokens, n in rows:
            if not 1 <= n < len(tokens):
                raise ValueError(f"a row of {len(tokens)} tokens cannot score its last {n}")
        out = [0.0] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        with torch.no_grad(), self._mode():
            lm = self._peft.get_base_model() if self._peft is not None else self._model
            past = self._prefix_cache(lm, prefix)
            for batch in _batches(order, [len(r[0]) for r in rows], self._batch_tokens, self._max_rows):
                for i, value in zip(batch, self._score_batch(lm, past, [rows[i] for i in batch]), strict=True):
                    out[i] = value
        return out

    def score_grid(
        self, prefix: Sequence[int], prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]
    ) -> list[list[float]]:
        """log p(answer | prefix + prompt) for every (prompt, answer) pair: ``[prompt][answer]``.

        Each prompt runs once (left-padded after the shared prefix: the padding is masked and the
        positions skip it), then every answer is teacher-forced on a copy of the prompts' KV cache, so
        m answers cost m x answer length per prompt instead of m x (prompt + answer).
        """
        import torch

        if not prefix or not prompts or any(not p for p in prompts) or any(not a for a in answers):
            # the prefix also gives the padding's queries something to attend to (an all-masked row is NaN)
            raise ValueError("score_grid needs a prefix and non-empty prompts and answers")
        out: list[list[float]] = []
        with torch.no_grad(), self._mode():
            lm = self._peft.get_base_model() if self._peft is not None else self._model
            past = self._prefix_cache(lm, prefix)
            for start in range(0, len(prompts), self._max_rows):
                out += self._grid_chunk(lm, past, len(prefix), prompts[start : start + self._max_rows], answers)
        return out

    @staticmethod
    def _grid_chunk(
        lm: Any, past: list[tuple[Any, Any]], prefix_len: int, prompts: Sequence[Sequence[int]], answers: Any
    ) -> list[list[float]]:
        import torch

        batch, width = len(prompts), max(len(p) for p in prompts)
        ids = torch.zeros((batch, width), dtype=torch.long)
        mask = torch.zeros((batch, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        positions = torch.full((batch, width), prefix_len, dtype=torch.long)
        lengths = [len(p) for p in prompts]
        for b, p in enumerate(prompts):  # [pad ... pad, prompt]: the prompt ends where the answers start
            ids[b, width - len(p) :] = torch.tensor(list(p))
            mask[b, prefix_len + width - len(p) :] = 1
            positions[b, width - len(p) :] = torch.arange(prefix_len, prefix_len + len(p))
        out = lm.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=_cache(past, batch),
            use_cache=True,
        )
        first = torch.log_softmax(lm.lm_head(out.last_hidden_state[:, -1]).float(), dim=-1)  # [B, vocab]
        prompt_kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        grid = torch.zeros((batch, len(answers)), dtype=torch.float64)
        for j, answer in enumerate(answers):
            grid[:, j] = first[:, answer[0]].double()
            if len(answer) == 1:
                continue
            k = len(answer) - 1  # feed answer[:-1], score answer[1:]
            hidden = lm.model(
                input_ids=torch.tensor([list(answer[:-1])] * batch),
                attention_mask=torch.cat([mask, torch.ones((batch, k), dtype=torch.long)], dim=1),
                position_ids=torch.tensor([[prefix_len + n + t for t in range(k)] for n in lengths]),
                past_key_values=_cache(prompt_kv, batch),
                use_cache=True,
            ).last_hidden_state
            logp = torch.log_softmax(lm.lm_head(hidden).float(), dim=-1)  # [B, k, vocab]
            targets = torch.tensor(list(answer[1:])).expand(batch, -1).unsqueeze(-1)
            grid[:, j] += logp.gather(2, targets).squeeze(-1).double().sum(dim=1)
        return [[float(v) for v in row] for row in grid]

    @contextlib.contextmanager
    def _mode(self) -> Iterator[None]:
        if self._peft is not None and not self._enabled:
            with self._peft.disable_adapter():
                yield
        else:
            yield

    @staticmethod
    def _prefix_cache(lm: Any, prefix: Sequence[int]) -> list[tuple[Any, Any]]:
        import torch

        if not prefix:
            return []
        cache = lm.model(input_ids=torch.tensor([list(prefix)]), use_cache=True).past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    @staticmethod
    def _score_batch(lm: Any, past: list[tuple[Any, Any]], rows: Sequence[Row]) -> list[float]:
        import torch

        batch, width = len(rows), max(len(t) for t, _ in rows)
        ids = torch.zeros((batch, width), dtype=torch.long)
        for b, (tokens, _) in enumerate(rows):
            ids[b, : len(tokens)] = torch.tensor(list(tokens))
        cache = _cache(past, batch)
        prefix_len = past[0][0].shape[2] if past else 0
        mask = torch.ones((batch, prefix_len + width), dtype=torch.long)
        hidden = lm.model(input_ids=ids, attention_mask=mask, past_key_values=cache, use_cache=True).last_hidden_state
        # position t-1 predicts token t: gather (row, position, target) for every scored token
        row_idx, pos_idx, targets = [], [], []
        for b, (tokens, n) in enumerate(rows):
            for t in range(len(tokens) - n, len(tokens)):
                row_idx.append(b)
                pos_idx.append(t - 1)
                targets.append(tokens[t])
        logits = lm.lm_head(hidden[torch.tensor(row_idx), torch.tensor(pos_idx)]).float()
        logp = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(targets).unsqueeze(1)).squeeze(1)
        sums = torch.zeros(batch, dtype=torch.float64).index_add_(0, torch.tensor(row_idx), logp.double())
        return [float(v) for v in sums]


def _cache(past: Sequence[tuple[Any, Any]], batch: int) -> Any:
    """A fresh DynamicCache over ``past`` (per layer keys/values [1 or batch, ...]) for ``batch`` rows; forward
    passes append to it by concatenation, so ``past``'s tensors are never written."""
    from transformers.cache_utils import DynamicCache

    cache = DynamicCache()
    for layer, (keys, values) in enumerate(past):
        cache.update(keys.expand(batch, -1, -1, -1), values.expand(batch, -1, -1, -1), layer)
    return cache


def _batches(order: Sequence[int], lengths: Sequence[int], budget: int, max_rows: int) -> Iterator[list[int]]:
    """Consecutive runs of ``order`` (sorted by length): rows x widest row <= ``budget``, rows <= ``max_rows``."""
    batch: list[int] = []
    for i in order:
        if batch and ((len(batch) + 1) * lengths[i] > budget or len(batch) == max_rows):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


def _copy_lora(peft_model: Any, adapter: LoadedAdapter, spec: ModelSpec) -> None:
    """Overwrite the wrapped model's LoRA weights with ``adapter``'s (absent layers: zero B, no effect)."""
    import numpy as np
    import torch

    inner = peft_model.base_model.model
    with torch.no_grad():
        for layer in range(spec.n_layers):
            for module in spec.module_paths.values():
                sub = inner.get_submodule(module.format(layer=layer))
                if hasattr(sub, "lora_B"):
                    sub.lora_B["default"].weight.zero_()
        for name, value in adapter.tensors.items():
            kind, layer_s, module = name.split(".")
            sub = inner.get_submodule(spec.module_paths[module].format(layer=layer_s))
            weight = (sub.lora_A if kind == "lora_A" else sub.lora_B)["default"].weight
            weight.copy_(torch.from_numpy(np.ascontiguousarray(value.T).astype(np.float32)))
