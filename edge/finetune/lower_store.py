"""The frozen lower layers' output, kept on disk between rounds (``<out_dir>/lower_cache.npz``).

Below the LoRA layers the model never changes, so the hidden state entering layer ``first`` is a
pure function of (base weights, the code computing it, ``first``, the shared prompt prefix, the
example's own tokens). A round computes it once per example (:class:`edge.finetune.train.LowerCache`);
catch-up rounds train on the same examples minutes later, and a static fact that changed only
changes its own examples. So the round saves what it computed and the next one starts from it::

    header   format, base fingerprint, torch + transformers versions, first, prefix ids
             (any mismatch: the file is ignored)
    keys     uint8 [n, 32]     sha256 of each example's token ids (the ids themselves, which decode
                               to the private facts, are not stored)
    lengths  int64 [n]         tokens of each example
    hidden   float16 [sum, H]  their hidden states at layer ``first``, concatenated (rows are kept in
                               float16 in memory as well, so a round that loads them trains on the
                               same values as the round that computed them)

The file is derived from the device's private static facts: it is written 0600, atomically, next to
the adapters, never leaves the device, and is rewritten (dropping the rows of facts that are gone)
whenever the examples change. Anything wrong with it (damaged, foreign, too big to load) reads as
empty: it is only a cache.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from shared.adapters import Array
from shared.files import atomic_write

FILE_NAME = "lower_cache.npz"
_FORMAT = 2


def row_key(tokens: Sequence[int]) -> bytes:
    """The store's key of one example: sha256 over its token ids (little-endian int64)."""
    return hashlib.sha256(np.asarray(tokens, dtype="<i8").tobytes()).digest()


@dataclass(frozen=True, slots=True)
class LowerStore:
    """The cache file of one twin's rounds on one base model (``fingerprint``, shared.modelspec)."""

    path: Path
    fingerprint: str

    def load(self, first: int, prefix: Sequence[int]) -> dict[bytes, Array]:
        """:func:`row_key` -> float16 hidden states [S, H]; empty when the file is missing, unreadable
        or was made for another base, software version, first layer or prefix."""
        try:
            with self.path.open("rb") as file, np.load(file, allow_pickle=False) as npz:
                if npz["header"].tolist() != self._header(first, prefix).tolist():
                    return {}
                keys, lengths, hidden = npz["keys"], npz["lengths"], npz["hidden"]
            ok = (
                keys.dtype == np.uint8 and keys.ndim == 2 and keys.shape[1] == 32
                and lengths.dtype == np.int64 and lengths.shape == (keys.shape[0],) and np.all(lengths > 0)
                and hidden.dtype == np.float16 and hidden.ndim == 2 and hidden.shape[0] == int(lengths.sum())
            )  # fmt: skip
            if not ok:
                return {}
            ends = np.cumsum(lengths)
            return {bytes(k): hidden[end - n : end] for k, n, end in zip(keys, lengths, ends, strict=True)}
        except Exception:  # a cache: whatever is wrong with the file (EOFError, zlib.error, MemoryError ...)
            return {}

    def save(self, first: int, prefix: Sequence[int], rows: Mapping[bytes, Array]) -> None:
        """Write ``rows`` (:func:`row_key` -> float16 [S, H]) atomically, readable by the owner only;
        temporary files of earlier, killed saves are removed first (one round at a time per folder)."""
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
        order = list(rows)
        keys = np.frombuffer(b"".join(order), dtype=np.uint8).reshape(len(order), 32)
        lengths = np.array([rows[k].shape[0] for k in order], dtype=np.int64)

        def write(out: BinaryIO) -> None:
            hidden = np.concatenate([rows[k] for k in order]) if order else np.zeros((0, 0), np.float16)
            np.savez(out, header=self._header(first, prefix), keys=keys, lengths=lengths, hidden=hidden)

        atomic_write(self.path, write)  # streamed: no second in-memory copy of the rows' bytes

    def remove(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink()

    def _header(self, first: int, prefix: Sequence[int]) -> Array:
        return np.array([str(_FORMAT), self.fingerprint, _software(), str(first), ",".join(map(str, prefix))])


def _software() -> str:
    """The versions of the code that computes the hidden states (an upgrade may change them)."""
    import torch
    import transformers

    return f"torch {torch.__version__}, transformers {transformers.__version__}"
