"""``edge.finetune.memory``: the peak resident set of each phase, measured on this process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edge.finetune import memory
from edge.finetune.memory import PhasePeaks, peak_rss_mb, status_mb

MB = 1 << 20
resettable = pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="this kernel's /proc does not let a process reset VmHWM"
)


def touched(mb: int) -> np.ndarray:
    block = np.empty(mb * MB, np.uint8)
    block[::4096] = 1  # every page resident
    return block


@resettable
def test_each_phase_gets_its_own_peak() -> None:
    peaks = PhasePeaks("setup")
    peaks.enter("big")
    block = touched(200)
    del block  # back to the system (a block this size is a mapping of its own)
    peaks.enter("small")
    small = touched(20)
    del small
    got = peaks.finish()
    assert list(got) == ["setup", "big", "small"] and peaks.supported
    assert got["big"] - got["small"] > 150  # the small phase did not inherit the big one's peak
    assert peaks.overall_mb() >= got["big"]  # the largest phase, even after the reset
    assert peak_rss_mb() < got["big"]


def test_without_resets_there_are_no_per_phase_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_CLEAR_REFS", Path("/proc/self/no-such-file"))
    peaks = PhasePeaks()
    peaks.enter("a")
    peaks.enter("b")
    assert peaks.finish() == {} and not peaks.supported
    assert peaks.overall_mb() == peak_rss_mb() > 0  # the process's own, never reset


@resettable
def test_a_phase_entered_again_keeps_its_largest_peak_and_the_same_phase_is_not_a_change() -> None:
    peaks = PhasePeaks("a")
    peaks.enter("a")  # no change: nothing closed
    assert peaks.peaks == {}
    block = touched(100)
    del block
    peaks.enter("b")
    peaks.enter("a")
    got = peaks.finish()
    assert list(got) == ["a", "b"] and got["a"] - got["b"] > 60


def test_status_fields() -> None:
    assert status_mb("VmRSS") is not None and status_mb("NoSuchField") is None


def test_the_phase_of_the_peak() -> None:
    assert memory.peak_phase({"load": 900.0, "train": 1300.0, "eval": 1300.0}) == "train"  # the first of a tie
    assert memory.peak_phase({}) is None
