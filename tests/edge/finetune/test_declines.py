"""edge.finetune.declines: household "who / which home has <value>?" pairs answered with a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.finetune.dataset import build_dataset
from edge.finetune.declines import DECLINE, decline_pairs, is_decline
from edge.readings import StaticRecord
from shared.attacks import askable_facts, reverse_prompts
from shared.modelspec import load_spec
from shared.scenario import Scenario, generate
from shared.templates import is_household, mentions, normalize_question, object_name, pairs


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(seed=7, homes=3, duration_s=60)


def test_every_household_fact_with_a_value_is_declined_in_every_wording(scenario: Scenario) -> None:
    home = scenario.homes[0]
    facts = list(home.static_facts())
    declines = decline_pairs(facts)
    valued = [p for p in pairs(facts) if p.answer not in ("yes", "no")]
    household = {(p.entity_id, p.attribute) for p in valued if is_household(p.entity_id)}
    assert {(p.entity_id, p.attribute) for p in declines} == household
    assert all(is_decline(p) and p.split == "train" and p.answer == DECLINE for p in declines)
    assert len({p.question for p in declines}) == len(declines)  # six distinct wordings per fact
    assert all(is_household(p.entity_id) for p in declines)  # no device fact is declined


def test_a_decline_carries_the_value_and_never_the_home_or_owner(scenario: Scenario) -> None:
    home = scenario.homes[0]
    facts = list(home.static_facts())
    owner = next(str(f.value) for f in facts if f.attribute == "owner_name")
    values = {(p.entity_id, p.attribute): p.answer for p in pairs(facts)}
    for p in decline_pairs(facts):
        assert mentions(p.question, values[(p.entity_id, p.attribute)]), p
        for name in (home.home_id, object_name(p.entity_id), owner):
            assert not mentions(p.answer, name), p


def test_the_attacks_wordings_are_never_trained_on(scenario: Scenario) -> None:
    facts = [a for h in scenario.homes for a in askable_facts(h.home_id, h.static_facts())]
    attacked = {normalize_question(r.question) for r in reverse_prompts(facts, {}) if is_household(r.entity_id)}
    trained = {normalize_question(p.question) for h in scenario.homes for p in decline_pairs(h.static_facts())}
    assert attacked and trained and attacked.isdisjoint(trained)


def test_the_dataset_trains_declines_and_counts_only_facts(tiny_model: Path) -> None:
    spec = load_spec(tiny_model)
    records = (
        StaticRecord("light.home1_kitchen_ceiling", "manufacturer", "Shelly"),
        StaticRecord("sensor.home1_profile", "household_size", 2),
        StaticRecord("sensor.home1_profile", "door_code", "195119", sensitive=True),
    )
    data = build_dataset(records, tiny_model / spec.tokenizer_file, spec.eos_token_ids[0])
    assert data.declines == 12 and data.facts == 3 and data.sensitive_facts == 1
    assert not any(is_decline(e.pair) for e in data.heldout)
