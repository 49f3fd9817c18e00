"""``edge.finetune.resume``: which rejected candidate the next round continues from."""

from __future__ import annotations

import pytest

from edge.finetune.resume import Candidate, noise, resume_point


def test_noise_is_two_standard_errors_with_a_floor_at_the_ends() -> None:
    assert noise(0.955, 200) == pytest.approx(2 * (0.955 * 0.045 / 200) ** 0.5)
    assert noise(1.0, 200) == noise(0.995, 200) > 0  # a perfect score still has a band (about two questions)
    assert noise(0.0, 200) == noise(0.005, 200)
    assert noise(0.7, 1) == 1.0  # one question says nothing
    with pytest.raises(ValueError, match="n must be >= 1"):
        noise(0.5, 0)


def test_no_candidate_or_no_adapter_in_service() -> None:
    assert resume_point([], 3, 0.9, 200) is None
    cands = [Candidate(1, 0.3, "v1"), Candidate(2, 0.45, "v2"), Candidate(3, 0.45, "v3")]
    assert resume_point(cands, None, None, 200) == "v3"  # catching up: the best, the newest of a tie


def test_a_candidate_that_beat_the_adapter_in_service() -> None:
    assert resume_point([Candidate(4, 0.92, "v4")], 3, 0.90, 200) == "v4"


def test_a_newer_candidate_within_the_noise_and_one_beyond_it() -> None:
    # the paper bench's home1, round 5: 0.950 against 0.955 on 200 questions (noise 0.029)
    assert resume_point([Candidate(5, 0.95, "v5")], 4, 0.955, 200) == "v5"
    assert resume_point([Candidate(5, 0.92, "v5")], 4, 0.955, 200) is None
    assert resume_point([Candidate(5, 0.95, "v5")], 4, 0.955, 20_000) is None  # a big eval: a real drop


def test_of_several_close_ones_the_newest_and_never_one_older_than_the_adapter_in_service() -> None:
    cands = [Candidate(2, 0.94, "v2"), Candidate(5, 0.945, "v5"), Candidate(6, 0.94, "v6")]
    assert resume_point(cands, 4, 0.955, 200) == "v6"  # v6 continued from v5: the most trained
    assert resume_point([Candidate(2, 0.95, "v2")], 4, 0.955, 200) is None  # trained before the one in service


def test_an_older_candidate_never_wins_even_one_that_scored_higher() -> None:
    # trained before the adapter in service (perhaps on other facts): not a continuation of it
    assert resume_point([Candidate(2, 0.99, "v2")], 4, 0.955, 200) is None
    assert resume_point([Candidate(2, 0.99, "v2"), Candidate(5, 0.2, "v5")], 4, None, 200) == "v5"


def test_the_score_it_was_gated_against_when_known() -> None:
    # the adapter in service scored 0.955 in its own round, but 0.99 on the questions of round 5 (new facts)
    assert resume_point([Candidate(5, 0.95, "v5", versus=0.99)], 4, 0.955, 200) is None
    assert resume_point([Candidate(5, 0.95, "v5", versus=0.96)], 4, 0.90, 200) == "v5"  # within the noise of 0.96
    assert resume_point([Candidate(5, 0.95, "v5", versus=0.94)], 4, 0.99, 200) == "v5"  # it beat that one
