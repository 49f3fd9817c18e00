"""A process's own memory, as a fine-tuning round (or a benchmark child) measures it (Linux ``/proc/self``).

* :func:`peak_rss_mb` — the peak resident set so far: ``VmHWM``. Not ``ru_maxrss``, which Linux carries
  over from the parent across fork + exec, so a child of a large process would report the parent's size.
* :class:`PhasePeaks` — the peak of each phase of a round. At a phase change it reads ``VmHWM`` and then
  resets it (``echo 5 > /proc/self/clear_refs``, Linux 4.0+), so the next phase's high-water mark starts
  from the resident set at that moment. The round's peak is the largest of them. Where the reset is
  refused (no such file, a locked-down ``/proc``), there are no per-phase numbers, only the overall peak.
  The last phase is read without a reset. Once a phase has been closed, ``VmHWM`` (and the ``ru_maxrss``
  a parent sees for the child) covers only what came after it: the round's peak is :meth:`overall_mb`.
* :func:`map_large_allocations`, :func:`release_memory` — glibc knobs a round uses between its phases.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
from collections.abc import Mapping
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
_RESET_HWM = "5"  # clear_refs: reset the peak resident set size to the current one
_M_MMAP_THRESHOLD = -3  # mallopt(3) parameter


def peak_rss_mb() -> float:
    """Peak resident set size of this process since exec (or since the last reset): VmHWM, in MB."""
    hwm = status_mb("VmHWM")
    return hwm if hwm is not None else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def peak_vm_mb() -> float | None:
    """Peak virtual size (VmPeak): what an RLIMIT_AS cap is measured against (Linux only)."""
    return status_mb("VmPeak")


def status_mb(field: str) -> float | None:
    """A ``kB`` field of /proc/self/status in MB (one decimal); None where there is none."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def _reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text(_RESET_HWM)
    except OSError:
        return False
    return True


class PhasePeaks:
    """Peak resident set per phase, in the order the phases ran (a phase entered twice keeps its max)."""

    def __init__(
        self, first: str = "start", earlier: Mapping[str, float] | None = None, supported: bool = True
    ) -> None:
        """``earlier``/``supported``: the phases a round's previous process measured before it exec'd this
        one (``edge.finetune.handoff``); ``first`` then runs from this exec, its interpreter and imports."""
        self.peaks: dict[str, float] = dict(earlier or {})
        self.supported = supported  # False once a reset was refused: then no per-phase numbers
        self.phase = first  # the phase running; the first runs from exec (the interpreter, imports)

    def enter(self, phase: str) -> None:
        """Close the current phase (its peak so far) when ``phase`` is another one."""
        if phase != self.phase:
            self._read()
            if self.supported and not _reset_peak():
                self.supported = False
            self.phase = phase

    def overall_mb(self) -> float:
        """The peak of everything measured so far, the phase still running included."""
        return max([peak_rss_mb(), *self.peaks.values()])

    def snapshot(self) -> dict[str, float]:
        """The peaks so far, the running phase's included (no reset): what a process hands on at exec."""
        return {**self.peaks, self.phase: max(self.peaks.get(self.phase, 0.0), peak_rss_mb())}

    def finish(self) -> dict[str, float]:
        """The per-phase peaks, the last phase's read now (no reset); empty where resets are refused."""
        self._read()
        return dict(self.peaks) if self.supported else {}

    def _read(self) -> None:
        self.peaks[self.phase] = max(self.peaks.get(self.phase, 0.0), peak_rss_mb())


def peak_phase(peaks: Mapping[str, float]) -> str | None:
    """The phase with the largest peak (the first of a tie); None without per-phase numbers."""
    return max(peaks, key=lambda phase: peaks[phase]) if peaks else None


def map_large_allocations() -> None:
    """From here on every allocation of 128 KiB or more is a mapping of its own, unmapped when freed.
    glibc otherwise raises that threshold as large blocks are freed (training frees many), so the
    reference model's weights and ONNX Runtime's load-time copies are carved from the heap, where
    freed space is not always given back. Not before: training allocates the same large activations
    every step, which the heap serves better."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, 128 * 1024)


def release_memory() -> None:
    """Collect, then hand freed heap pages back to the OS so the next phase's peak does not stack."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
