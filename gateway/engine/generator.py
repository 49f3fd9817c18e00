"""Continuous batching: one running batch, rows join (``add``) and leave between decode steps.

State of the running batch (B rows, T time columns)::

    past    present.* of the last run, fed back as past_key_values.*  [B, kv_heads, T, head_dim]
    mask    int64 [B, T]   1 = real token, 0 = left padding
    last    int64 [B]      each row's newest sampled token, not yet in the cache
    slots   int64 [B]      each row's adapter bank slot (fixed for the row's lifetime)

``add`` prefills the new requests as their own left-padded batch, samples their first token, then
merges their cache into the running one (the narrower side is left-padded along time with masked
zeros). ``step`` runs one decode step for every row, samples, and drops finished rows (rows are
sliced out of the cache, and columns that became padding in every row are trimmed). Each row keeps
its own sampler state, so a row's tokens do not depend on which other rows share its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from gateway.engine.kv import concat_rows, left_pad_prompts, take_rows
from gateway.engine.sampling import SamplingParams, choose_token, new_rng
from shared.errors import ModelError

if TYPE_CHECKING:
    from gateway.engine.engine import Engine

Array = npt.NDArray[Any]
FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """``prompt`` is raw text (tokenized as is; use ``chat_prompt`` for Instruct models) or token ids."""

    request_id: str
    prompt: str | tuple[int, ...]
    slot: int = 0
    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_new_tokens: int = 64
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationResult:
    request_id: str
    slot: int
    prompt_tokens: int
    token_ids: tuple[int, ...]  # generated, without the final eos
    text: str  # decoded, cut before a stop string
    finish_reason: FinishReason


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One row's progress in one ``add``/``step``. ``text_delta`` holds back what might still turn out
    to be the start of a stop string or an incomplete UTF-8 sequence; ``result`` is set when finished."""

    request_id: str
    token_id: int
    text_delta: str
    finish_reason: FinishReason | None
    result: GenerationResult | None
    logits: Array | None = None  # float32 [vocab] the token was chosen from (keep_logits=True only)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class _Row:
    request: GenerationRequest
    prompt_len: int
    rng: np.random.Generator | None
    tokens: list[int] = field(default_factory=list)
    emitted: int = 0  # characters of text already sent as deltas


class Generator:
    """The step-wise API over one running batch; not thread-safe (one owner calls add/step)."""

    def __init__(self, engine: Engine, *, keep_logits: bool = False) -> None:
        self._engine = engine
        self._keep_logits = keep_logits
        self._rows: list[_Row] = []
        self._past: dict[str, Any] = {}
        self._mask: Array = np.zeros((0, 0), np.int64)
        self._last: Array = np.zeros(0, np.int64)
        self._slots: Array = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._rows)

    def active_slots(self) -> frozenset[int]:
        """Bank slots used by running rows: the registry must not overwrite these."""
        return frozenset(int(s) for s in self._slots)

    def add(self, requests: Sequence[GenerationRequest]) -> list[TokenEvent]:
        """Prefill ``requests``, emit their first tokens, and merge the unfinished ones into the batch."""
        if not requests:
            return []
        if len(self._rows) + len(requests) > self._engine.options.max_batch:
            raise ModelError(
                f"batch full: {len(self._rows)} running + {len(requests)} new > max_batch "
                f"{self._engine.options.max_batch}"
            )
        prompts = [self._engine.prompt_ids(r) for r in requests]
        ids, mask, positions = left_pad_prompts(prompts)
        slots = np.array([r.slot for r in requests], np.int64)
        model = self._engine.model
        logits, past = model.forward(
            ids, mask, positions, model.empty_past(len(requests)), slots, self._engine.bank_values()
        )
        rows = [_Row(r, len(p), new_rng(r.sampling)) for r, p in zip(requests, prompts, strict=True)]
        events = [self._advance(row, logits[i]) for i, row in enumerate(rows)]
        keep = [i for i, e in enumerate(events) if not e.finished]
        if keep:
            self._merge(rows, keep, past, mask, slots, np.array([e.token_id for e in events], np.int64))
        return events

    def step(self) -> list[TokenEvent]:
        """One decode step for every running row; finished rows leave the batch."""
        if not self._rows:
            return []
        positions = self._mask.sum(axis=1, keepdims=True)  # real tokens so far = the new token's position
        mask = np.concatenate([self._mask, np.ones((len(self._rows), 1), np.int64)], axis=1)
        logits, past = self._engine.model.forward(
            self._last[:, None], mask, positions, self._past, self._slots, self._engine.bank_values()
        )
        self._past, self._mask = past, mask
        events = [self._advance(row, logits[i]) for i, row in enumerate(self._rows)]
        self._last = np.array([e.token_id for e in events], np.int64)
        keep = [i for i, e in enumerate(events) if not e.finished]
        if len(keep) < len(self._rows):
            self._keep_rows(keep)
        return events

    def cancel(self, request_id: str) -> bool:
        """Drop a running row (deadline passed, client gone). True if it was running."""
        keep = [i for i, row in enumerate(self._rows) if row.request.request_id != request_id]
        if len(keep) == len(self._rows):
            return False
        self._keep_rows(keep)
        return True

    # --------------------------------------------------------------------------------------------

    def _merge(
        self, rows: list[_Row], keep: list[int], past: dict[str, Any], mask: Array, slots: Array, first: Array
    ) -> None:
        new_past, new_mask = take_rows(_numpy(past), mask, keep)
        if self._rows:
            merged, merged_mask = concat_rows((_numpy(self._past), self._mask), (new_past, new_mask))
        else:
            merged, merged_mask = new_past, new_mask
        model = self._engine.model
        self._past = {name: model.value(value) for name, value in merged.items()}
        self._mask = merged_mask
        self._rows += [rows[i] for i in keep]
        self._last = np.concatenate([self._last, first[keep]])
        self._slots = np.concatenate([self._slots, slots[keep]])

    def _keep_rows(self, keep: list[int]) -> None:
        self._rows = [self._rows[i] for i in keep]
        self._last, self._slots = self._last[keep], self._slots[keep]
        if not keep:
            self._past, self._mask = {}, np.zeros((0, 0), np.int64)
            return
        kept, self._mask = take_rows(_numpy(self._past), self._mask, keep)
        model = self._engine.model
        self._past = {name: model.value(value) for name, value in kept.items()}

    def _advance(self, row: _Row, logits: Array) -> TokenEvent:
        """Choose the row's next token and decide whether it finished."""
        req = row.request
        token = choose_token(logits, req.sampling, row.rng)
        kept_logits = logits.copy() if self._keep_logits else None
        reason: FinishReason | None = None
        if token in self._engine.eos_ids and not req.sampling.ignore_eos:
            reason = "eos"
            text = self._engine.codec.decode(row.tokens)
        else:
            row.tokens.append(token)
            text = self._engine.codec.decode(row.tokens)
            cut = _first_stop(text, req.stop)
            if cut is not None:
                text, reason = text[:cut], "stop"
            elif len(row.tokens) >= req.max_new_tokens:
                reason = "length"
        visible = text if reason is not None else _holdback(text, req.stop)
        delta = visible[row.emitted :] if len(visible) > row.emitted else ""
        row.emitted = max(row.emitted, len(visible))
        result = None
        if reason is not None:
            result = GenerationResult(
                req.request_id, req.slot, row.prompt_len, tuple(row.tokens), text, reason
            )
        return TokenEvent(req.request_id, token, delta, reason, result, kept_logits)


def _numpy(past: dict[str, Any]) -> dict[str, Array]:
    """Zero-copy numpy views of OrtValues (callers slice/concatenate, which copies)."""
    return {name: value.numpy() for name, value in past.items()}


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(hits) if hits else None


def _holdback(text: str, stops: Sequence[str]) -> str:
    """``text`` minus a trailing partial UTF-8 char (U+FFFD) or a suffix that begins a stop string."""
    end = len(text)
    while end and text[end - 1] == "\ufffd":
        end -= 1
    for stop in stops:
        for k in range(min(len(stop) - 1, end), 0, -1):
            if text[end - k : end] == stop[:k]:
                end -= k
                break
    return text[:end]
