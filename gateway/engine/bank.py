"""The resident adapter bank: one numpy array per LoRA graph input, bound once, written in place.

For every layer i and target module m the bank holds ``lora_A.{i}.{m}`` [slots, d_in, R] and
``lora_B.{i}.{m}`` [slots, R, d_out]. Each run gathers the rows named by ``lora_index``, so the
graph never sees per-row copies. Slot 0 stays all zeros: the plain base.

R is the bank's current rank: the largest rank loaded so far (at most the model's max_rank; the
graph's rank axis is dynamic). Every run gathers batch * R * (d_in + d_out) values per projection,
so padding rank-8 adapters to a max_rank of 16 would double the LoRA cost for nothing. When a
higher-rank adapter arrives the arrays grow once (existing slots are copied, zero-padded).

Loading an adapter zero-pads its rank to R and folds alpha/r into B (see
``LoadedAdapter.bank_rows``), then overwrites that slot's rows in place. The OrtValues wrap the
numpy memory (no copy), so the next run sees the new adapter: a hot swap costing one slot's bytes.
Writes must happen between runs (the engine is single-threaded; the registry loads between steps)
and never into a slot a running row uses (see ``Generator.active_slots``).

Memory at full rank: slots * sum over sites of max_rank * (d_in + d_out) * itemsize; SmolLM2 with
the default targets (q_proj, v_proj, up_proj, down_proj): 11.8 MB per slot at rank 16 in float32,
5.9 MB at rank 8 (q_proj and v_proj alone: 3.7 / 1.8 MB); half that in float16. Every layer has
sites, though edge rounds put LoRA on the top fifth only: a graph with sites in those layers alone
would need a fifth of this (not done yet).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shared.adapters import LoadedAdapter
from shared.errors import AdapterBaseMismatch, AdapterShapeError, ModelError
from shared.modelspec import BankDtype, ModelSpec

Array = npt.NDArray[Any]


class AdapterBank:
    def __init__(
        self, spec: ModelSpec, slots: int, dtype: BankDtype | None = None, *, fixed_rank: int | None = None
    ) -> None:
        """``fixed_rank``: the graph's rank axis is static (older prepared graphs); never grow."""
        if slots < 1:
            raise ModelError(f"an adapter bank needs at least 1 slot (slot 0 = base), got {slots}")
        if dtype is not None and dtype != spec.bank_dtype:
            raise ModelError(f"the graph of {spec.name} takes a {spec.bank_dtype} bank, not {dtype}")
        self.spec = spec
        self.slots = slots
        self.dtype: BankDtype = spec.bank_dtype
        self._np_dtype = np.float16 if self.dtype == "float16" else np.float32
        self.arrays: dict[str, Array] = {}
        self.values: dict[str, Any] = {}
        self.rank = 0
        self._fixed = fixed_rank is not None
        self._grow(fixed_rank or 1)
        self._occupants: dict[int, tuple[str, int]] = {}

    @property
    def nbytes(self) -> int:
        """Bytes the bank takes at the model's max_rank (what to budget for; it may grow to this)."""
        return sum(a.nbytes for a in self.arrays.values()) * self.spec.max_rank // self.rank

    @property
    def resident_nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays.values())

    def load(self, slot: int, adapter: LoadedAdapter) -> None:
        """Write ``adapter`` into ``slot`` (1..slots-1), replacing whatever was there."""
        self._check_slot(slot)
        man = adapter.manifest
        if man.base_fingerprint != self.spec.fingerprint:
            raise AdapterBaseMismatch(f"adapter {man.twin_id} v{man.version} is for another base model")
        if man.rank > min(self.spec.max_rank, self.rank if self._fixed else self.spec.max_rank) or not set(
            man.target_modules
        ) <= set(self.spec.targets):
            raise AdapterShapeError(
                f"adapter {man.twin_id} v{man.version}: rank {man.rank} / targets {list(man.target_modules)} "
                f"do not fit max_rank {self.spec.max_rank} / targets {list(self.spec.target_modules)}"
            )
        if man.rank > self.rank and not self._fixed:
            self._grow(man.rank)
        for layer, module, a_name, b_name in self.spec.bank_names():
            if module in man.target_modules:
                a, b = adapter.bank_rows(layer, module, self.rank)
                self.arrays[a_name][slot] = a  # casts to the bank dtype
                self.arrays[b_name][slot] = b
            else:
                self.arrays[a_name][slot] = 0
                self.arrays[b_name][slot] = 0
        self._occupants[slot] = (man.twin_id, man.version)

    def clear(self, slot: int) -> None:
        self._check_slot(slot)
        for arr in self.arrays.values():
            arr[slot] = 0
        self._occupants.pop(slot, None)

    def occupant(self, slot: int) -> tuple[str, int] | None:
        """(twin_id, version) loaded in ``slot``, or None for an empty slot."""
        return self._occupants.get(slot)

    def _grow(self, rank: int) -> None:
        """Reallocate every array at ``rank``, keeping loaded slots (zero rank-padding is exact)."""
        import onnxruntime as ort

        old, r = self.arrays, self.rank
        grown: dict[str, Array] = {}
        for _layer, module, a_name, b_name in self.spec.bank_names():
            d_in, d_out = self.spec.target_shape(module)
            a = np.zeros((self.slots, d_in, rank), self._np_dtype)
            b = np.zeros((self.slots, rank, d_out), self._np_dtype)
            if old:
                a[:, :, :r] = old[a_name]
                b[:, :r, :] = old[b_name]
            grown[a_name], grown[b_name] = a, b
        self.arrays, self.rank = grown, rank
        # zero-copy views: writing self.arrays[...] in place is what the next run reads
        self.values = {name: ort.OrtValue.ortvalue_from_numpy(arr) for name, arr in self.arrays.items()}

    def _check_slot(self, slot: int) -> None:
        if slot == 0:
            raise ModelError("slot 0 is the reserved all-zero base slot")
        if not 0 < slot < self.slots:
            raise ModelError(f"slot {slot} outside the bank's 1..{self.slots - 1}")
