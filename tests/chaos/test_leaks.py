"""Part 5 of the chaos suite: the leak scanner's rules, the payload capture, and a real (short) pipeline
scanned for every sensitive value of the scenario, with a planted leak to prove the scan can fail."""

from __future__ import annotations

import json
from pathlib import Path

import msgpack
import pytest

from benchmarks.chaos import leaks
from benchmarks.chaos.gatewayproc import tiny_cache
from shared.capture import MAGIC, PayloadCapture, read_capture
from shared.config import EdgeConfig, load_config
from shared.leakscan import needles, scan_bytes
from shared.protocol import messages as m

PIN = "195119"
NAME = "Dashiell Delacroix"
SCHEDULE = "weekdays away 08:25-16:35 except Mon, Thu (home office); weekends out 10:10-11:50"
TARGETS = needles({"pin": PIN, "name": NAME, "schedule": SCHEDULE})


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"code=195119;", [("pin", "utf-8")]),
        (msgpack.packb({"door_code": PIN}), [("pin", "utf-8")]),  # a msgpack str: length prefix + UTF-8
        (b'{"ts": 1780000123.195119}', []),  # a timestamp's fraction is not the PIN
        (b"id 2195119 or 1951190", []),  # nor a longer number
        (b"1,195119 items", []),
        (b"owner DASHIELL DELACROIX", [("name", "utf-8")]),
        (NAME.encode("utf-16-le"), [("name", "utf-16-le")]),
        (b"... weekends out 10:10-11:50 ...", [("schedule", "clause")]),
        (b"nothing here", []),
    ],
)
def test_scan_rules(data: bytes, found: list[tuple[str, str]]) -> None:
    assert [(h.label, h.form) for h in scan_bytes(data, TARGETS, "t")] == found


def test_values_too_short_to_scan_are_refused() -> None:
    with pytest.raises(ValueError, match="pin"):
        needles({"pin": "123"})


def test_capture_records_every_message_and_survives_a_cut_record(tmp_path: Path) -> None:
    path = tmp_path / "c.cap"
    with PayloadCapture(path) as cap:
        cap.append(m.Ping(5), b"r" * 16)
        cap.append(m.Query("home1", "door?", max_new_tokens=2), b"q" * 16)
    with path.open("ab") as fh:
        fh.write((1000).to_bytes(4, "big") + b"\x01cut short")  # a kill -9 mid-record
    records = list(read_capture(path))
    assert path.read_bytes().startswith(MAGIC)
    assert [(r.tag, r.rid) for r in records] == [(m.Ping.TAG, b"r" * 16), (m.Query.TAG, b"q" * 16)]
    assert msgpack.unpackb(records[1].body)["question"] == "door?"


def test_a_restarted_capture_drops_the_cut_tail_so_later_records_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "c.cap"
    with PayloadCapture(path) as cap:
        cap.append(m.Ping(5), b"r" * 16)
    with path.open("ab") as fh:
        fh.write((1000).to_bytes(4, "big") + b"\x01cut short")  # killed mid-record
    with PayloadCapture(path) as cap:  # the daemon restarts and keeps capturing
        cap.append(m.Ping(6), b"s" * 16)
    assert [r.rid for r in read_capture(path)] == [b"r" * 16, b"s" * 16]


async def test_pipeline_leaks_nothing_and_a_planted_leak_is_found(
    tmp_path: Path, model_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tiny_cache(model_cache)
    details = await leaks.run_pipeline(tmp_path, cache, leaks.LeakOptions(prompts=10, finetune=False))
    assert details["answers"] == 14 and min(details["prompts"].values()) >= 10
    report = leaks.scan_work(tmp_path)
    assert report.values == 15 and report.hits == [], report.to_json()
    assert report.scanned["payloads"] >= 30 and report.scanned["gateway_storage"] >= 2 and report.scanned["logs"] >= 4
    assert report.notes == []  # payloads came from the daemons' capture files, not the outbox fallback
    assert leaks.main([str(tmp_path)]) == 0
    assert leaks.sensitive_values([]) == {}  # nothing to search for without profiles
    door = next(v for k, v in leaks.sensitive_values(_profiles(tmp_path)).items() if k == "home2 door_code")
    (tmp_path / "gateway-data" / "planted.bin").write_bytes(msgpack.packb({"note": f"door {door}"}))
    capsys.readouterr()
    assert leaks.main([str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["leak_hits"] == 1 and out["hits"][0]["label"] == "home2 door_code"
    assert door not in json.dumps(out)  # the report names the leak, it does not repeat it


def _profiles(work: Path) -> list[EdgeConfig]:
    return [load_config(EdgeConfig, p) for p in sorted(work.rglob("edge.toml"))]
