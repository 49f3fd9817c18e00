"""edge.finetune.eval_record: a score is read back only for the same base model and questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.finetune.dataset import Example
from edge.finetune.eval_record import load_score, sample_digest, save_score
from shared.templates import QAPair


def example(question: str, answer: str) -> Example:
    pair = QAPair("light.home1_kitchen_ceiling", "model", question, answer, "model.colon", "heldout", False)
    return Example(pair, (1, 2, 3), (4, 5))


SAMPLE = [example("a?", "1"), example("b?", "2")]


def test_a_saved_score_is_read_back_for_the_same_digest_only(tmp_path: Path) -> None:
    path = tmp_path / "eval_score.json"
    digest = sample_digest("fp", SAMPLE)
    save_score(path, digest, 0.875, 200)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_score(path, digest) == 0.875
    assert load_score(path, sample_digest("other base", SAMPLE)) is None
    assert load_score(path, sample_digest("fp", SAMPLE[::-1])) is None  # same questions, another order
    assert load_score(path, sample_digest("fp", [SAMPLE[0], example("b?", "3")])) is None  # an answer changed
    assert load_score(tmp_path / "missing.json", digest) is None


@pytest.mark.parametrize(
    "body",
    [
        "",
        "{",
        "[]",
        '{"digest": "D"}',
        '{"digest": "D", "accuracy": "0.9"}',
        '{"digest": "D", "accuracy": true}',
        '{"digest": "D", "accuracy": 1.5}',
        '{"digest": "D", "accuracy": NaN}',
    ],
)
def test_anything_wrong_with_the_file_reads_as_unknown(tmp_path: Path, body: str) -> None:
    path = tmp_path / "eval_score.json"
    path.write_text(body)
    assert load_score(path, "D") is None
