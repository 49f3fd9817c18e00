"""A real round on SmolLM2-135M-Instruct (prepared into the user cache) on a handful of facts: the
adapter must export, match PEFT on the ONNX serving graph and answer a held-out paraphrase."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.finetune.round import RoundRequest, run_round
from edge.model.prepare import prepare_model
from edge.readings import StaticRecord
from shared.adapters import read_adapter
from shared.modelspec import default_cache_dir

pytestmark = pytest.mark.slow

FACTS = (
    StaticRecord("light.home9_attic_lamp", "manufacturer", "Nanoleaf"),
    StaticRecord("light.home9_attic_lamp", "installed_year", 2021),
    StaticRecord("lock.home9_cellar_door", "model", "Assure Lock 2"),
    StaticRecord("lock.home9_cellar_door", "connectivity", "zwave"),
    StaticRecord("sensor.home9_profile", "door_code", "482915", sensitive=True),
    StaticRecord("sensor.home9_profile", "pets", "two rabbits"),
)


def test_a_round_on_smollm2_learns_a_few_facts(tmp_path: Path) -> None:
    model = prepare_model("smollm2-135m", default_cache_dir(os.environ))
    request = RoundRequest(
        twin_id="home9",
        version=1,
        model_dir=str(model.path),
        out_dir=str(tmp_path),
        records=FACTS,
        threads=2,
        epochs=20,
        batch_size=4,
        max_steps=120,  # 20 epochs of 24 questions: bounded by steps, so a loaded machine is slower, not worse
        max_time_s=1200.0,
        eval_threshold=0.5,
    )
    result = run_round(request)
    assert result.status == "accepted", result.reason
    assert result.parity_max_abs is not None and result.parity_max_abs < 1e-2
    assert result.accuracy is not None and result.accuracy >= 0.5 and result.facts == 6
    assert result.adapter_bytes * 250 < sum(p.stat().st_size for p in (model.path / "hf").glob("*.safetensors"))
    assert read_adapter(Path(result.adapter_path or ""), model.spec).manifest.training["records"] == 6
