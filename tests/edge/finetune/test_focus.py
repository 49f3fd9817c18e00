"""edge.finetune.focus: how often an example comes back, and the per-version file of its last losses."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge.finetune.focus import load_losses, save_losses, visit_share


@pytest.mark.parametrize(
    ("loss", "focus", "floor", "share"),
    [
        (None, 0.2, 0.2, 1.0),  # never seen: always
        (0.5, 0.2, 0.2, 1.0),  # not learned yet: always
        (0.1, 0.2, 0.2, 0.5),  # half way: every other epoch
        (0.001, 0.2, 0.2, 0.2),  # learned: at the floor, never less
        (0.001, 0.0, 0.2, 1.0),  # focus off: every epoch
        (math.nan, 0.2, 0.2, 1.0),  # a broken measurement is no reason to skip
    ],
)
def test_visit_share(loss: float | None, focus: float, floor: float, share: float) -> None:
    assert visit_share(loss, focus, floor) == pytest.approx(share)


def test_losses_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "example_losses.npz"
    losses = {bytes([i]) * 32: i / 10 for i in range(5)}
    save_losses(path, losses)
    assert path.stat().st_mode & 0o777 == 0o600  # keyed by hashes of the private facts' tokens
    assert load_losses(path) == pytest.approx(losses)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    save_losses(path, {})
    assert load_losses(path) == {}


def test_a_missing_or_damaged_file_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "example_losses.npz"
    assert load_losses(path) == {}
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert load_losses(path) == {}
    save_losses(path, {b"k" * 32: math.inf, b"j" * 32: 0.25})
    assert load_losses(path) == {b"j" * 32: 0.25}  # a non-finite loss is dropped, not trusted
