"""Batch bookkeeping for continuous batching: pure numpy functions on the KV cache and masks.

Layout: every past tensor is [batch, n_kv_heads, time, head_dim]; ``mask`` is int64 [batch, time]
with 1 for real tokens and 0 for left padding. Rows are left-padded so each row's newest token is
at the last time index; padding columns carry zeros and are masked out, so their content is moot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]
_TIME = 2  # time axis of a past tensor


def left_pad_time(past: Mapping[str, Array], mask: Array, width: int) -> tuple[dict[str, Array], Array]:
    """Grow the time axis to ``width`` by prepending masked zero columns."""
    extra = width - mask.shape[1]
    if extra < 0:
        raise ValueError(f"cannot left-pad {mask.shape[1]} columns to {width}")
    if extra == 0:
        return dict(past), mask
    grown = {}
    for name, value in past.items():
        pad = [(0, 0)] * value.ndim
        pad[_TIME] = (extra, 0)
        grown[name] = np.pad(value, pad)
    return grown, np.pad(mask, ((0, 0), (extra, 0)))


def concat_rows(
    first: tuple[Mapping[str, Array], Array],
    second: tuple[Mapping[str, Array], Array],
) -> tuple[dict[str, Array], Array]:
    """Stack two batches (first's rows, then second's) after padding both to a common time width."""
    width = max(first[1].shape[1], second[1].shape[1])
    past_a, mask_a = left_pad_time(first[0], first[1], width)
    past_b, mask_b = left_pad_time(second[0], second[1], width)
    past = {name: np.concatenate([past_a[name], past_b[name]], axis=0) for name in past_a}
    return past, np.concatenate([mask_a, mask_b], axis=0)


def take_rows(past: Mapping[str, Array], mask: Array, rows: Sequence[int]) -> tuple[dict[str, Array], Array]:
    """Keep ``rows`` (in that order), then drop leading columns that are padding in every kept row."""
    index = np.asarray(rows, dtype=np.int64)
    kept_mask = mask[index]
    start = leading_padding(kept_mask)
    return {name: np.ascontiguousarray(value[index, :, start:]) for name, value in past.items()}, kept_mask[
        :, start:
    ]


def leading_padding(mask: Array) -> int:
    """Number of leading columns that are 0 in every row (0 for an empty batch)."""
    if mask.size == 0:
        return 0
    real = mask.any(axis=0)
    return int(real.argmax()) if real.any() else mask.shape[1]


def left_pad_prompts(prompts: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[Array, Array, Array]:
    """input_ids, attention_mask [batch, longest] and position_ids (0 at each row's first real token)."""
    width = max(len(p) for p in prompts)
    ids = np.full((len(prompts), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = 1
    positions = np.maximum(mask.cumsum(axis=1) - 1, 0)  # pads get 0: masked anyway
    return ids, mask, positions
