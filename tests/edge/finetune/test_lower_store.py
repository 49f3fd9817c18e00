"""edge.finetune.lower_store: a round's lower-layer output, kept for the next round or ignored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.finetune.lower_store import LowerStore, row_key

PREFIX = (1, 2, 3)
SEQS = [(5, 6, 7), (8,)]


def _rows() -> dict[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    return {row_key(seq): rng.standard_normal((len(seq), 4)).astype(np.float16) for seq in SEQS}


@pytest.fixture
def store(tmp_path: Path) -> LowerStore:
    saved = LowerStore(tmp_path / "lower_cache.npz", "a" * 64)
    saved.save(2, PREFIX, _rows())
    return saved


def test_round_trip_is_exact_private_and_holds_no_token_ids(store: LowerStore) -> None:
    loaded = store.load(2, PREFIX)
    assert loaded.keys() == _rows().keys()
    assert all(np.array_equal(loaded[k], v) and loaded[k].dtype == np.float16 for k, v in _rows().items())
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in store.path.parent.iterdir()] == ["lower_cache.npz"]  # no temporary file left
    with np.load(store.path) as npz:
        assert sorted(npz.files) == ["header", "hidden", "keys", "lengths"]  # digests, not the facts' tokens


def test_another_base_layer_or_prefix_is_not_trusted(store: LowerStore) -> None:
    assert LowerStore(store.path, "b" * 64).load(2, PREFIX) == {}
    assert store.load(3, PREFIX) == {}
    assert store.load(2, (1, 2)) == {}


def test_a_killed_save_leaves_a_temporary_file_the_next_save_removes(store: LowerStore) -> None:
    leftover = store.path.with_name(f".{store.path.name}.99999.tmp")
    leftover.write_bytes(b"half")
    store.save(2, PREFIX, {})
    assert not leftover.exists() and store.load(2, PREFIX) == {}


def _npy(store: LowerStore) -> None:
    with store.path.open("wb") as out:
        np.save(out, np.zeros(3))


def _rewrite(store: LowerStore, **arrays: np.ndarray) -> None:
    good = {"header": store._header(2, PREFIX), "keys": np.zeros((1, 32), np.uint8)}
    good |= {"lengths": np.array([3]), "hidden": np.zeros((3, 4), np.float16)}
    with store.path.open("wb") as out:
        np.savez(out, **(good | arrays))


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.path.write_bytes(s.path.read_bytes()[:100]),  # cut by a crash
        lambda s: s.path.write_bytes(b""),  # empty (np.load: EOFError)
        lambda s: s.path.write_bytes(b"not a zip at all"),
        lambda s: _npy(s),  # an .npy, not an archive
        lambda s: _rewrite(s, lengths=np.array([5])),  # longer than the hidden states
        lambda s: _rewrite(s, lengths=np.array([3.0])),  # not integers
        lambda s: _rewrite(s, keys=np.zeros((1, 16), np.uint8)),  # not sha256 digests
        lambda s: _rewrite(s, hidden=np.zeros((3, 4), np.float32)),  # not float16
    ],
)
def test_damaged_or_foreign_files_read_as_empty(store: LowerStore, damage: object) -> None:
    damage(store)  # type: ignore[operator]
    assert store.load(2, PREFIX) == {}


def test_missing_file_reads_as_empty_and_remove_is_idempotent(tmp_path: Path) -> None:
    store = LowerStore(tmp_path / "lower_cache.npz", "a" * 64)
    assert store.load(2, PREFIX) == {}
    store.remove()
    store.save(2, PREFIX, _rows())
    store.remove()
    assert not store.path.exists()
