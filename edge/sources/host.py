"""The host source: the edge box's own health as sensors (temperatures, load, memory, disks).

Entities are ``sensor.<host>_...`` where ``<host>`` is the twin id made entity-safe:

- ``_temp_<chip>_<label>``: each ``/sys/class/hwmon/hwmon*/temp*_input`` (millidegrees Celsius),
  labelled by ``temp*_label`` or the chip's ``name``; °C with one decimal;
- ``_load_1m``, ``_load_5m``, ``_load_15m`` from ``/proc/loadavg``;
- ``_memory_used`` from ``/proc/meminfo`` (``MemTotal`` - ``MemAvailable``, percent);
- ``_disk_<path>_used`` for each configured path (``shutil.disk_usage``, percent).

Machines without sensors are normal (containers, most VMs): a missing hwmon tree yields no
temperatures and no error. A file that exists but cannot be read or parsed (a sensor whose driver
returns EIO) is logged once and skipped; the rest of the poll still counts. Reads run in a worker
thread so slow sysfs drivers never stall the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import shutil
from pathlib import Path

from edge.readings import AttrValue, Reading
from edge.sources.base import OnceLog, PollingSource
from edge.sources.clock import SYSTEM_CLOCK, Clock
from shared.config.edge import HostSource

log = logging.getLogger(__name__)

PERCENT: dict[str, AttrValue] = {"unit_of_measurement": "%"}
TEMPERATURE: dict[str, AttrValue] = {"unit_of_measurement": "°C", "device_class": "temperature"}


def slug(text: str) -> str:
    """``text`` as an entity object-id fragment: lowercase ``[a-z0-9_]``, never empty."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


class HostSensors(PollingSource):
    """Polls the host's sensors every ``cfg.period_s``; see the module docstring."""

    def __init__(
        self,
        cfg: HostSource,
        host: str,
        *,
        proc_root: Path = Path("/proc"),
        clock: Clock = SYSTEM_CLOCK,
        name: str = "host",
    ) -> None:
        super().__init__(name, interval_s=cfg.period_s, clock=clock)
        self._cfg = cfg
        self._prefix = f"sensor.{slug(host)}"
        self._proc = proc_root
        self.problems = OnceLog(log)

    async def poll(self) -> list[Reading]:
        return await asyncio.to_thread(self.read, self.clock.time())

    def read(self, now: float) -> list[Reading]:
        """Every sensor that can be read right now, stamped ``now``."""
        values = [*self._temperatures(), *self._load(), *self._memory(), *self._disks()]
        return [Reading(entity, state, attrs, now, self.name) for entity, state, attrs in values]

    def _temperatures(self) -> list[tuple[str, str, dict[str, AttrValue]]]:
        out: list[tuple[str, str, dict[str, AttrValue]]] = []
        used: set[str] = set()
        for chip in _sorted_glob(self._cfg.hwmon_root, "hwmon*"):
            chip_name = self._text(chip / "name", required=False) or chip.name
            for sensor in _sorted_glob(chip, "temp*_input"):
                raw = self._text(sensor, required=True)
                if raw is None or (milli := self._number(sensor, raw)) is None:
                    continue
                label = self._text(sensor.with_name(sensor.name.replace("_input", "_label")), required=False)
                entity = f"{self._prefix}_temp_{slug(f'{chip_name}_{label or sensor.name[:-6]}')}"
                if entity in used:  # two identical chips (two NVMe drives): tell them apart by hwmon index
                    entity = f"{entity}_{slug(chip.name)}"
                used.add(entity)
                friendly = f"{chip_name} {label}" if label else chip_name
                out.append((entity, f"{milli / 1000:.1f}", {**TEMPERATURE, "friendly_name": friendly}))
        return out

    def _load(self) -> list[tuple[str, str, dict[str, AttrValue]]]:
        path = self._proc / "loadavg"
        text = self._text(path, required=True)
        fields = text.split() if text else []
        loads = [v for f in fields[:3] if (v := self._number(path, f)) is not None]
        if len(loads) < 3:
            return []
        spans = ("1m", "5m", "15m")
        return [(f"{self._prefix}_load_{span}", f"{v:g}", {}) for span, v in zip(spans, loads, strict=True)]

    def _memory(self) -> list[tuple[str, str, dict[str, AttrValue]]]:
        path = self._proc / "meminfo"
        info: dict[str, float] = {}
        for line in (self._text(path, required=True) or "").splitlines():
            key, _, rest = line.partition(":")
            if key in ("MemTotal", "MemAvailable") and (value := self._number(path, rest.split()[0])) is not None:
                info[key] = value
        total, available = info.get("MemTotal"), info.get("MemAvailable")
        if not total or available is None:
            self.problems.report(path, "bad_value", "%s: no MemTotal/MemAvailable in %s", self.name, path)
            return []
        return [(f"{self._prefix}_memory_used", f"{100 * (total - available) / total:.1f}", dict(PERCENT))]

    def _disks(self) -> list[tuple[str, str, dict[str, AttrValue]]]:
        out: list[tuple[str, str, dict[str, AttrValue]]] = []
        for path in self._cfg.disks:
            try:
                usage = shutil.disk_usage(path)
            except OSError as err:
                self.problems.report(path, "unreadable", "%s: cannot stat disk %s: %s", self.name, path, err)
                continue
            used = 100 * usage.used / usage.total if usage.total else 0.0
            entity = f"{self._prefix}_disk_{slug(str(path)) if str(path) != '/' else 'root'}_used"
            out.append((entity, f"{used:.1f}", {**PERCENT, "path": str(path)}))
        return out

    def _text(self, path: Path, *, required: bool) -> str | None:
        """The file's stripped text; None if absent (fine unless ``required``) or unreadable (logged once)."""
        try:
            return path.read_text(encoding="utf-8", errors="replace").strip()
        except FileNotFoundError:
            if required:
                self.problems.report(path, "missing", "%s: %s does not exist", self.name, path)
            return None
        except OSError as err:
            self.problems.report(path, "unreadable", "%s: cannot read %s: %s", self.name, path, err)
            return None

    def _number(self, path: Path, text: str) -> float | None:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return value
        self.problems.report(path, "bad_value", "%s: %s holds no number", self.name, path)
        return None


def _sorted_glob(folder: Path, pattern: str) -> list[Path]:
    """Matches in natural order (hwmon2 before hwmon10); empty when ``folder`` does not exist."""
    try:
        found = list(folder.glob(pattern))
    except OSError:
        return []
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])
