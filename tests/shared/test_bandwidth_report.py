"""``llmtwin bandwidth``: reports over real bandwidth-log files (written by shared.bwlog where it fits).

Rotation is the real RotatingFileHandler's; corrupt, truncated and newer-schema lines are written
by hand. The live tail runs in a thread (and once as a real process stopped with SIGINT); tests
wait for its output with a deadline, never with sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.bandwidth.follow import follow
from shared.bandwidth.issues import IssueLog
from shared.bandwidth.reader import LogReader, expand_logs
from shared.bandwidth.records import parse_record
from shared.bandwidth.summary import Summary
from shared.bandwidth.units import parse_by, parse_duration, parse_since
from shared.bwlog import BandwidthLog, Side
from shared.cli import main
from shared.metering import handshake_bytes

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_780_000_000.0  # 2026-05-28 20:26:40 UTC
HOUR = 3600.0


def message(
    log: BandwidthLog,
    ts: float,
    *,
    tenant: str = "home1",
    direction: str = "in",
    kind: str = "state",
    payload: int = 400,
    compressed: int = 200,
    frame: int = 283,
) -> None:
    log.message(
        tenant=tenant,
        twin=tenant,
        direction=direction,
        msg_type=kind,
        rid=os.urandom(16),
        payload=payload,
        compressed=compressed,
        frame=frame,
        ts=ts,
    )


def kernel(
    log: BandwidthLog, ts: float, conn: str, *, received: int, acked: int, tenant: str = "home1", **kw: Any
) -> None:
    fields: dict[str, object] = {
        "tenant": tenant,
        "twin": tenant,
        "type": "tcp_info",
        "conn": conn,
        "event": kw.pop("event", "sample"),
        "bytes_acked": acked,
        "bytes_received": received,
        "bytes_sent": kw.pop("sent", acked),
        "bytes_retrans": kw.pop("retrans", 0),
        "segs_out": 1,
        "segs_in": 1,
    }
    log.write(fields, ts=ts)


def open_log(path: Path, *, side: Side = "gateway", max_bytes: int = 0, backups: int = 0) -> BandwidthLog:
    log = BandwidthLog(path, side=side, max_bytes=max_bytes, backups=backups)
    log.start()
    return log


def record_line(ts: float, **overrides: object) -> str:
    rec: dict[str, object] = {
        "v": 1,
        "ts": ts,
        "side": "edge",
        "tenant": "home1",
        "twin": "home1",
        "dir": "out",
        "type": "state",
        "rid": "ab" * 16,
        "payload": 100,
        "compressed": 80,
        "frame": 120,
    }
    rec.update(overrides)
    return json.dumps(rec) + "\n"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = main(["bandwidth", *argv, "--json"])
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, doc


def group(doc: dict[str, Any], **key: str) -> dict[str, Any]:
    matches = [g for g in doc["groups"] if all(g[k] == v for k, v in key.items())]
    assert len(matches) == 1, (key, doc["groups"])
    return matches[0]


# ---- totals, grouping, windows ---------------------------------------------------------------------


@pytest.fixture
def two_tenants(tmp_path: Path) -> Path:
    """home1: 3 states in + 3 acks out; home2: 2 queries in (1,500 B frames) + 2 answers out."""
    path = tmp_path / "gateway" / "bandwidth.jsonl"
    log = open_log(path)
    for i in range(3):
        message(log, T0 + i * 60, tenant="home1", kind="state", payload=400, compressed=200, frame=283)
        message(log, T0 + i * 60 + 1, tenant="home1", direction="out", kind="ack", payload=40, compressed=40, frame=77)
    for i in range(2):
        message(log, T0 + 2 * HOUR + i, tenant="home2", kind="query", payload=2000, compressed=1400, frame=1500)
        message(log, T0 + 2 * HOUR + i + 0.5, tenant="home2", direction="out", kind="final", payload=900, frame=1000)
    log.stop()
    return path


def test_totals_per_tenant_type_and_direction(two_tenants: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, str(two_tenants))
    assert code == 0
    assert doc["by"] == ["tenant", "type", "dir"]
    assert group(doc, tenant="home1", type="state", dir="in") == {
        "tenant": "home1",
        "type": "state",
        "dir": "in",
        "messages": 3,
        "payload": 1200,
        "compressed": 600,
        "frame": 849,
    }
    assert group(doc, tenant="home2", type="final", dir="out")["frame"] == 2000
    assert doc["total"] == {"messages": 10, "payload": 1200 + 120 + 4000 + 1800, "compressed": 600 + 120 + 2800 + 400,
                            "frame": 849 + 231 + 3000 + 2000}  # fmt: skip
    assert doc["messages"] == 10 and doc["issues"] == [] and doc["sides"] == {"gateway": 10}
    assert doc["files"] == [{"path": str(two_tenants), "lines": 10, "records": 10, "skipped": 0}]


def test_grouping_keys_and_human_tables(two_tenants: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, str(two_tenants), "--by", "dir,tenant")
    assert code == 0
    assert [(g["dir"], g["tenant"], g["frame"]) for g in doc["groups"]] == [
        ("in", "home1", 849),
        ("in", "home2", 3000),
        ("out", "home1", 231),
        ("out", "home2", 2000),
    ]
    assert main(["bandwidth", str(two_tenants), "--by", "tenant"]) == 0
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line for line in out.splitlines() if line.startswith("  home") or line.startswith("  total")
    }
    assert rows["home2"].split() == ["home2", "4", "5,800", "3,200", "5,000", "82.2%"]
    assert rows["total"].split() == ["total", "10", "7,120", "3,920", "6,080", "100.0%"]
    # columns line up: every number of a column ends at the same position
    header = next(line for line in out.splitlines() if line.startswith("  tenant"))
    for line in (rows["home1"], rows["home2"], rows["total"]):
        assert line.index("%") == header.index("share") + len("share") - 1


def test_windows_give_bytes_per_window_with_empty_windows(
    two_tenants: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, doc = run_json(capsys, str(two_tenants), "--window", "1h")
    assert code == 0
    assert doc["window_s"] == 3600
    start = (T0 // HOUR) * HOUR
    assert [(w["start"], w["messages"], w["frame"]) for w in doc["windows"]] == [
        (start, 6, 849 + 231),
        (start + HOUR, 0, 0),
        (start + 2 * HOUR, 4, 5000),
    ]
    assert doc["windows"][2]["frame_bytes_per_s"] == pytest.approx(5000 / 3600, abs=1e-3)
    main(["bandwidth", str(two_tenants), "--window", "10m"])
    out = capsys.readouterr().out
    assert "per 10m window" in out and "2026-05-28 20:20:00" in out


def test_since_counts_only_later_records(two_tenants: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = run_json(capsys, str(two_tenants), "--since", "2026-05-28T21:26:40Z")  # T0 + 1 h
    assert code == 0
    assert doc["messages"] == 4 and doc["before_since"] == 6
    assert {g["tenant"] for g in doc["groups"]} == {"home2"}


# ---- files: rotated sets, several files -------------------------------------------------------------


def test_rotated_set_is_read_oldest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bw.jsonl"
    log = open_log(path, max_bytes=1500, backups=50)
    written = [T0 + i for i in range(60)]
    for ts in written:
        message(log, ts, frame=int(ts - T0) + 1)
    log.stop()
    rotated = sorted(tmp_path.glob("bw.jsonl.*"))
    assert len(rotated) >= 5, "the log should have rotated several times"

    issues = IssueLog()
    paths = expand_logs([path], issues)
    assert paths == [*(path.with_name(f"bw.jsonl.{n}") for n in range(len(rotated), 0, -1)), path]
    records = list(LogReader(issues).read(paths))
    assert [r.ts for r in records] == written
    assert issues.total == 0

    # naming the rotated files too (a shell glob) reads each file once
    code, doc = run_json(capsys, str(path), *map(str, rotated))
    assert code == 0 and doc["messages"] == 60
    assert doc["total"]["frame"] == sum(range(1, 61))
    assert [f["path"] for f in doc["files"]] == [str(p) for p in paths]


def test_several_files_from_both_sides(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for home, frames in (("home1", (100, 200)), ("home2", (300,))):
        log = open_log(tmp_path / home / "bandwidth.jsonl", side="edge")
        for i, frame in enumerate(frames):
            message(log, T0 + i, tenant=home, direction="out", frame=frame)
        log.stop()
    gw = open_log(tmp_path / "gw.jsonl")
    message(gw, T0 + 5, tenant="home1", frame=100)
    gw.stop()
    logs = [
        str(tmp_path / "home1" / "bandwidth.jsonl"),
        str(tmp_path / "home2" / "bandwidth.jsonl"),
        str(tmp_path / "gw.jsonl"),
    ]
    code, doc = run_json(capsys, *logs, "--by", "side,tenant")
    assert code == 0
    assert [(g["side"], g["tenant"], g["messages"], g["frame"]) for g in doc["groups"]] == [
        ("edge", "home1", 2, 300),
        ("edge", "home2", 1, 300),
        ("gateway", "home1", 1, 100),
    ]
    assert len(doc["files"]) == 3
    main(["bandwidth", *logs])
    assert "logs of both sides" in capsys.readouterr().out


# ---- bad input ---------------------------------------------------------------------------------------


def test_corrupt_and_truncated_lines_are_reported_and_the_rest_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bw.jsonl"
    path.write_text(
        record_line(T0)
        + record_line(T0 + 1)
        + '{"v": 1, "ts": 12, "side": "edge", "tenant": "home1", "twin": "h\n'  # line 3: cut JSON
        + record_line(T0 + 2, frame="120")  # line 4: wrong type
        + "\n"  # line 5: blank, ignored
        + record_line(T0 + 3, dir="sideways")  # line 6
        + record_line(T0 + 4)
        + record_line(T0 + 5)[:40]  # line 8: the writer died mid-line
    )
    code, doc = run_json(capsys, str(path))
    assert code == 0
    assert doc["messages"] == 3 and doc["total"]["frame"] == 360
    found = {(i["line"], i["kind"]) for i in doc["issues"]}
    assert found == {(3, "corrupt"), (4, "invalid"), (6, "invalid"), (8, "truncated")}
    assert doc["files"][0]["skipped"] == 4

    assert main(["bandwidth", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}:3: not valid JSON" in out
    assert f"{path}:4: not a version-1 record: 'frame' must be a non-negative integer, got '120'" in out
    assert f"{path}:6: not a version-1 record: 'dir' must be one of in, out, got 'sideways'" in out
    assert f"{path}:8: truncated line" in out


def test_replies_and_twinless_messages_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bw.jsonl"  # the gateway logs replies and PING/FETCH with an empty twin
    path.write_text(record_line(T0, side="gateway", twin="", type="final") + record_line(T0 + 1, twin="", type="ping"))
    code, doc = run_json(capsys, str(path))
    assert code == 0 and doc["messages"] == 2 and doc["issues"] == []


def test_newer_schema_version_is_reported_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bw.jsonl"
    path.write_text(record_line(T0) + record_line(T0 + 1, v=2, frame=10**9, extra={"x": 1}) + record_line(T0 + 2))
    code, doc = run_json(capsys, str(path))
    assert code == 0
    assert doc["messages"] == 2 and doc["total"]["frame"] == 240
    assert doc["issues"] == [
        {
            "file": str(path),
            "line": 2,
            "kind": "newer_schema",
            "message": "schema version 2 is newer than this reader's (1): skipped",
        }
    ]


def test_one_bad_file_cannot_flood_the_issue_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bw.jsonl"
    path.write_text("".join(record_line(T0 + i, v=2) for i in range(100)) + record_line(T0))
    code, doc = run_json(capsys, str(path))
    assert code == 0 and doc["messages"] == 1
    assert len(doc["issues"]) == 20 and doc["issues_total"] == 100
    assert doc["issues_suppressed"] == [{"file": str(path), "kind": "newer_schema", "count": 80}]


def test_over_long_line_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shared.bandwidth.reader as reader

    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 64)
    path = tmp_path / "bw.jsonl"
    path.write_text(record_line(T0, tenant="h" * 20) + "x" * 500 + "\n" + record_line(T0 + 1, tenant="h" * 20))
    issues = IssueLog()
    records = list(LogReader(issues).read([path]))
    assert records == []  # record lines are over 64 B as well
    issues = IssueLog()
    monkeypatch.setattr(reader, "MAX_LINE_BYTES", 4096)
    path.write_text(record_line(T0) + "x" * 10_000 + "\n" + record_line(T0 + 1))
    records = list(LogReader(issues).read([path]))
    assert [r.ts for r in records] == [T0, T0 + 1]
    assert [(i.line, i.kind) for i in issues.issues] == [(2, "corrupt")]


def test_missing_rotated_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bw.jsonl"
    path.write_text(record_line(T0 + 3))
    path.with_name("bw.jsonl.1").write_text(record_line(T0 + 2))
    path.with_name("bw.jsonl.3").write_text(record_line(T0))
    code, doc = run_json(capsys, str(path))
    assert code == 0
    assert doc["messages"] == 3
    assert [f["path"] for f in doc["files"]] == [str(path) + ".3", str(path) + ".1", str(path)]
    assert [(i["file"], i["kind"]) for i in doc["issues"]] == [(str(path) + ".2", "missing")]

    path.unlink()  # rotated files left, current file gone
    code, doc = run_json(capsys, str(path))
    assert code == 0 and doc["messages"] == 2
    assert (str(path), "missing") in {(i["file"], i["kind"]) for i in doc["issues"]}


def test_exit_status_when_nothing_can_be_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["bandwidth", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"{missing}: no such file" in err and "no log file could be read" in err
    assert main(["bandwidth", str(tmp_path)]) == 1  # a directory: unreadable
    assert "cannot open" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["bandwidth", str(empty)]) == 0  # readable, just nothing in it


@pytest.mark.parametrize(
    "argv",
    [
        ["--window", "soon"],
        ["--window", "0"],
        ["--by", "tenant,colour"],
        ["--by", "tenant,tenant"],
        ["--since", "yesterday"],
    ],
)
def test_bad_arguments_exit_2(two_tenants: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bandwidth", str(two_tenants), *argv])
    assert info.value.code == 2
    assert "llmtwin bandwidth: error: argument" in capsys.readouterr().err


def test_bad_option_combinations_and_baselines_exit_2(
    two_tenants: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bandwidth", str(two_tenants), "--baselines", "b.json"]) == 2
    assert "--baselines is only used with --plot" in capsys.readouterr().err
    assert main(["bandwidth", str(two_tenants), "--follow", "--plot", str(tmp_path / "p.png")]) == 2
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"baselines": [{"name": "raw", "points": [[T0, 0], [T0 - 1, 5]]}]}))
    pytest.importorskip("matplotlib")
    assert main(["bandwidth", str(two_tenants), "--plot", str(tmp_path / "p.png"), "--baselines", str(bad)]) == 2
    assert f"{bad}: baselines[0].points[1]: timestamps must not decrease" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


def test_argument_parsers() -> None:
    assert parse_duration("90") == 90 and parse_duration("10m") == 600 and parse_duration("1.5h") == 5400
    assert parse_since("1780000000") == T0
    assert parse_since("2026-05-28T20:26:40") == T0  # naive: UTC
    assert parse_since("2026-05-28T22:26:40+02:00") == T0
    assert parse_since("2h", now=T0 + 2 * HOUR) == T0
    assert parse_by("type, dir") == ("type", "dir")


# ---- kernel vs model -------------------------------------------------------------------------------


def test_kernel_totals_next_to_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up, down = handshake_bytes()  # the gateway receives the client's half (up)
    path = tmp_path / "gw.jsonl"
    log = open_log(path)
    # home1: connection "1" carries 2 messages each way and closes; the id is then reused
    message(log, T0, frame=283)
    message(log, T0 + 1, direction="out", kind="ack", frame=77)
    kernel(log, T0 + 2, "1", received=up + 283, acked=down + 77)
    message(log, T0 + 3, frame=283)
    message(log, T0 + 4, direction="out", kind="ack", frame=77)
    kernel(log, T0 + 5, "1", received=up + 566, acked=down + 154, event="close")
    message(log, T0 + 6, frame=300)
    kernel(log, T0 + 7, "1", received=up + 300 + 10, acked=down, retrans=64)  # 10 B the model does not know
    # home2: two connections at once, exactly as modelled
    for conn, retrans in (("a", 0), ("b", None)):  # b: a kernel without bytes_retrans (null)
        message(log, T0 + 8, tenant="home2", kind="query", frame=1000)
        kernel(log, T0 + 9, conn, tenant="home2", received=up + 1000, acked=down, retrans=retrans)
    # home3: messages but no kernel samples
    message(log, T0 + 10, tenant="home3", frame=50)
    log.stop()

    code, doc = run_json(capsys, str(path))
    assert code == 0 and doc["kernel_samples"] == 5
    rows = {r["tenant"]: r for r in doc["kernel"]}
    home1 = rows["home1"]
    assert home1["connections"] == 2
    assert home1["frame_in"] == 866 and home1["handshake_in"] == 2 * up and home1["model_in"] == 866 + 2 * up
    assert home1["kernel_in"] == 2 * up + 566 + 310
    assert home1["diff_in"] == pytest.approx(10 / (866 + 2 * up), abs=1e-6)
    assert home1["model_out"] == home1["kernel_out"] == 2 * down + 154 and home1["diff_out"] == 0
    assert home1["bytes_retrans"] == 64
    assert rows["home2"]["connections"] == 2 and rows["home2"]["diff_in"] == 0 and rows["home2"]["diff_out"] == 0
    assert rows["home2"]["bytes_retrans"] is None and rows["home2"]["bytes_sent"] == 2 * down
    assert rows["home3"]["kernel_in"] is None and rows["home3"]["diff_in"] is None

    main(["bandwidth", str(path)])
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.strip().startswith("gateway  home1"))
    assert (
        f"{866 + 2 * up:,d}" in line and f"{2 * up + 876:,d}" in line and f"{10 / (866 + 2 * up) * 100:+.2f}%" in line
    )


def test_kernel_counters_before_since_are_a_baseline(tmp_path: Path) -> None:
    summary = Summary(since=T0 + 10)
    samples = [(T0, 1000, 500), (T0 + 20, 1600, 700)]
    for ts, received, acked in samples:
        line = record_line(ts, type="tcp_info", side="gateway", conn="c", event="sample", bytes_acked=acked,
                           bytes_received=received, bytes_sent=acked, bytes_retrans=0)  # fmt: skip
        summary.add(parse_record(json.loads(line)))
    summary.add(parse_record(json.loads(record_line(T0 + 15, side="gateway", dir="in", frame=600))))
    (row,) = summary.reconciliation()
    assert row.kernel is not None and row.kernel.bytes_received == 600 and row.kernel.bytes_acked == 200
    assert row.connections == 1 and row.handshake_in == 0  # connected before --since: no handshake after it
    assert row.diff_in == 0


# ---- plot --------------------------------------------------------------------------------------------


def test_plot_writes_a_png(two_tenants: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    baselines = tmp_path / "baselines.json"
    baselines.write_text(
        json.dumps(
            {
                "baselines": [
                    {"name": "raw JSON every tick", "points": [[T0, 0], [T0 + HOUR, 2e6], [T0 + 2 * HOUR, 4e6]]},
                    {"name": "raw sensor stream", "bytes_per_s": 50},
                ]
            }
        )
    )
    out = tmp_path / "plots" / "wire.png"
    assert main(["bandwidth", str(two_tenants), "--plot", str(out), "--baselines", str(baselines)]) == 0
    assert f"plot: {out} (10 messages)" in capsys.readouterr().out
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_the_command_loads_no_heavy_modules(two_tenants: Path) -> None:
    code = (
        "import sys; from shared.cli import main; rc = main(['bandwidth', sys.argv[1], '--json']); "
        "heavy = [m for m in ('matplotlib', 'torch', 'onnxruntime', 'zmq', 'numpy') if m in sys.modules]; "
        "assert rc == 0 and not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code, str(two_tenants)], check=True, capture_output=True, cwd=ROOT)


# ---- follow ------------------------------------------------------------------------------------------


class Lines:
    """What the follower emitted, and a way to wait for a line with a deadline."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def emit(self, line: str) -> None:
        with self._cond:
            self.lines.append(line)
            self._cond.notify_all()

    def wait_for_messages(self, n: int, timeout: float = 20.0) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            batches = [json.loads(line) for line in self.lines if line.startswith("{")]
            return next((b for b in reversed(batches) if b["messages"] >= n), None)

        with self._cond:
            found = self._cond.wait_for(done, timeout=timeout)
        assert found, f"follower did not report {n} messages in {timeout} s: {self.lines[-3:]}"
        return found


@pytest.fixture
def follower(tmp_path: Path) -> Iterator[tuple[Path, Lines, Summary, IssueLog]]:
    path = tmp_path / "bw.jsonl"
    lines, summary, issues = Lines(), Summary(), IssueLog()
    stop = threading.Event()
    result: list[object] = []

    def run() -> None:
        result.append(follow([path], summary, issues, emit=lines.emit, interval_s=0.01, stop=stop, as_json=True))

    # existing content, with one rotated file, is read at start-up
    path.with_name("bw.jsonl.1").write_text(record_line(T0, frame=1))
    path.write_text(record_line(T0 + 1, frame=2))
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        lines.wait_for_messages(2)
        yield path, lines, summary, issues
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive() and result, "follow() did not stop"


def test_follow_picks_up_appended_lines(follower: tuple[Path, Lines, Summary, IssueLog]) -> None:
    path, lines, _summary, issues = follower
    with path.open("a") as fh:
        fh.write(record_line(T0 + 2, frame=4) + record_line(T0 + 3, frame=8))
    batch = lines.wait_for_messages(4)
    assert batch["total"]["frame"] == 15
    with path.open("a") as fh:  # half a line first: nothing is counted until its newline arrives
        full = record_line(T0 + 4, frame=16)
        fh.write(full[:30])
        fh.flush()
        fh.write(full[30:])
    assert lines.wait_for_messages(5)["total"]["frame"] == 31
    assert issues.total == 0


def test_follow_survives_rotation(follower: tuple[Path, Lines, Summary, IssueLog]) -> None:
    path, lines, summary, issues = follower
    log = open_log(path, max_bytes=1200, backups=100)  # continues the set: rotates bw.jsonl.1 → .2 …
    for i in range(80):
        message(log, T0 + 10 + i, frame=1)
    log.stop()
    assert len(list(path.parent.glob("bw.jsonl.*"))) >= 5
    batch = lines.wait_for_messages(82)
    assert batch["messages"] == 82 and batch["total"]["frame"] == 3 + 80
    assert issues.total == 0, [str(i) for i in issues.issues]
    assert summary.messages == 82


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_follow_stops_cleanly_on_ctrl_c(two_tenants: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared", "bandwidth", str(two_tenants), "--follow", "--interval", "0.05s"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background jobs with SIGINT ignored, and Python keeps an
        # ignored SIGINT ignored: give the child the terminal's default, as a user's shell does
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the follower reported what it found
        assert "total 10 msgs, 6,080 B on the wire (in 3,849 / out 2,231)" in first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "messages by tenant, type, dir" in out and "Traceback" not in err


def test_tailer_reads_partial_lines_rotations_and_truncation_once_each(tmp_path: Path) -> None:
    from shared.bandwidth.follow import Tailer

    path = tmp_path / "bw.jsonl"
    issues = IssueLog()
    tailer = Tailer(path, issues)
    try:
        assert tailer.poll() == [] and not tailer.opened_once  # not there yet: waits
        first = record_line(T0, frame=1)
        path.write_text(first[:25])
        assert tailer.poll() == []  # half a line: waits for its newline
        with path.open("a") as fh:
            fh.write(first[25:] + record_line(T0 + 1, frame=2))
        assert [r.ts for r in tailer.poll()] == [T0, T0 + 1]

        # two rotations between polls, the first with a line appended just before it
        with path.open("a") as fh:
            fh.write(record_line(T0 + 2))
        path.rename(path.with_name("bw.jsonl.1"))
        path.write_text(record_line(T0 + 3) + record_line(T0 + 4))
        path.with_name("bw.jsonl.1").rename(path.with_name("bw.jsonl.2"))
        path.rename(path.with_name("bw.jsonl.1"))
        path.write_text(record_line(T0 + 5))
        assert [r.ts for r in tailer.poll()] == [T0 + 2, T0 + 3, T0 + 4, T0 + 5]
        assert tailer.poll() == []

        path.write_text("")  # truncated in place (copytruncate), then written again
        assert tailer.poll() == []
        path.write_text(record_line(T0 + 6))
        assert [r.ts for r in tailer.poll()] == [T0 + 6]
        assert [i.kind for i in issues.issues] == ["rotation"]
        assert "truncated in place" in issues.issues[0].message
    finally:
        tailer.close()
