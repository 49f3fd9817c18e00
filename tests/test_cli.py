"""The ``llmtwin`` entry point: help lists working commands; errors are one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "config" in out


def test_config_check_ok_and_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(ROOT / "firmware_configs" / "gateway.toml")]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[device]\ntwin_id = "Bad Id"\n')
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL  {bad}: device.twin_id = 'Bad Id': must match" in out


def test_console_script_runs_without_heavy_imports() -> None:
    code = (
        "import sys; from shared.cli import main; main(['config', 'check', sys.argv[1]]); "
        "heavy = [m for m in ('torch', 'onnxruntime', 'zmq', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code, str(ROOT / "firmware_configs" / "gateway.toml")], check=True)


def test_scenario_generate_is_byte_identical(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["scenario", "generate", "--hours", "2", "--out", str(a)]) == 0
    assert main(["scenario", "generate", "--hours", "2", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    ha = tmp_path / "trace.jsonl"
    assert main(["scenario", "generate", "--hours", "1", "--format", "ha-jsonl", "--out", str(ha)]) == 0
    first = ha.read_text().splitlines()[0]
    assert '"entity_id"' in first and '"last_changed"' in first
    assert main(["scenario", "summary"]) == 0
    assert "3 homes" in capsys.readouterr().out
