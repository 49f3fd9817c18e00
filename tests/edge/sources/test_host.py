"""Host sensors read from a fake sysfs/procfs tree in tmp_path (the kernel's files are the I/O boundary)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from edge.sources import HostSensors, VirtualClock
from edge.sources.host import slug
from shared.config.edge import HostSource

MEMINFO = "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    hwmon = tmp_path / "sys" / "class" / "hwmon"
    write(hwmon / "hwmon0" / "name", "coretemp\n")
    write(hwmon / "hwmon0" / "temp1_input", "45000\n")
    write(hwmon / "hwmon0" / "temp1_label", "Package id 0\n")
    write(hwmon / "hwmon0" / "temp2_input", "0\n")  # a sensor at exactly 0 °C is a reading
    write(hwmon / "hwmon0" / "temp2_label", "Core 0\n")
    write(hwmon / "hwmon10" / "name", "nvme\n")
    write(hwmon / "hwmon10" / "temp1_input", "38850\n")
    write(hwmon / "hwmon2" / "name", "nvme\n")
    write(hwmon / "hwmon2" / "temp1_input", "-1500\n")
    (hwmon / "hwmon3" / "temp1_input").mkdir(parents=True)  # unreadable: reading it raises an OSError
    write(hwmon / "hwmon4" / "temp1_input", "garbage\n")  # no name file: the chip's folder name is used
    write(tmp_path / "proc" / "loadavg", "0.00 1.50 0.25 1/467 12345\n")
    write(tmp_path / "proc" / "meminfo", MEMINFO)
    return tmp_path


def sensors(root: Path, hwmon: Path | None = None) -> HostSensors:
    cfg = HostSource(type="host", period_s=60.0, hwmon_root=hwmon or root / "sys/class/hwmon", disks=(root,))
    return HostSensors(cfg, "Edge-Box.1", proc_root=root / "proc", clock=VirtualClock())


async def test_reads_temperatures_load_memory_and_disks(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.host")
    source = sensors(tree)
    readings = {r.entity_id: r for r in await source.poll_once()}
    states = {entity: r.state for entity, r in readings.items()}
    disk = f"sensor.edge_box_1_disk_{slug(str(tree))}_used"
    usage = shutil.disk_usage(tree)
    assert states == {
        "sensor.edge_box_1_temp_coretemp_package_id_0": "45.0",
        "sensor.edge_box_1_temp_coretemp_core_0": "0.0",
        "sensor.edge_box_1_temp_nvme_temp1": "-1.5",  # hwmon2 sorts before hwmon10 (natural order)
        "sensor.edge_box_1_temp_nvme_temp1_hwmon10": "38.9",
        "sensor.edge_box_1_load_1m": "0",
        "sensor.edge_box_1_load_5m": "1.5",
        "sensor.edge_box_1_load_15m": "0.25",
        "sensor.edge_box_1_memory_used": "75.0",
        disk: f"{100 * usage.used / usage.total:.1f}",
    }
    temp = readings["sensor.edge_box_1_temp_coretemp_package_id_0"]
    assert dict(temp.attributes) == {
        "unit_of_measurement": "°C",
        "device_class": "temperature",
        "friendly_name": "coretemp Package id 0",
    }
    assert {r.ts for r in readings.values()} == {VirtualClock().time()}
    assert {r.source for r in readings.values()} == {"host"}

    await source.poll_once()  # the same broken files again: counted, not logged again
    assert source.problems.counts == {"unreadable": 2, "bad_value": 2}
    assert len(caplog.records) == 2


async def test_a_machine_without_hwmon_is_not_an_error(tree: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.host")
    source = sensors(tree, hwmon=tree / "no" / "such" / "hwmon")
    entities = [r.entity_id for r in await source.poll_once()]
    assert not any("_temp_" in e for e in entities)
    assert "sensor.edge_box_1_memory_used" in entities
    assert caplog.records == [] and not source.problems.counts


async def test_missing_proc_files_and_bad_disks_are_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="edge.sources.host")
    cfg = HostSource(type="host", hwmon_root=tmp_path / "none", disks=(tmp_path / "gone",))
    source = HostSensors(cfg, "h", proc_root=tmp_path / "proc")
    assert await source.poll_once() == []
    assert await source.poll_once() == []
    assert source.problems.counts == {"missing": 4, "bad_value": 2, "unreadable": 2}
    assert len(caplog.records) == 4  # loadavg, meminfo, "no MemTotal", the disk


@pytest.mark.parametrize(("text", "expected"), [("Edge-Box.1", "edge_box_1"), ("/", "x"), ("/var/lib", "var_lib")])
def test_slug(text: str, expected: str) -> None:
    assert slug(text) == expected
