"""shared.templates: one-way pairs only, disjoint paraphrase splits, deterministic rendering."""

from __future__ import annotations

import string
from collections import Counter

import pytest

from shared.scenario import Scenario, generate
from shared.templates import (
    AUDIT_TEMPLATES,
    SYSTEM_PROMPT,
    TEMPLATES,
    Fact,
    Kind,
    QAPair,
    audit_pairs,
    is_one_way,
    kind_of,
    mentions,
    merge_ranges,
    normalize_answer,
    object_name,
    pairs,
    query_messages,
    question_for,
    render_value,
)


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(seed=7, homes=3, duration_s=60)  # the homes (static facts) do not depend on the duration


@pytest.fixture(scope="module")
def scenario_pairs(scenario: Scenario) -> list[QAPair]:
    return pairs(scenario.static_facts())


def test_every_pair_is_one_way(scenario_pairs: list[QAPair]) -> None:
    assert len(scenario_pairs) > 6 * 1000
    for pair in scenario_pairs:
        assert is_one_way(pair), pair
        assert not mentions(pair.question, pair.answer), pair  # the value is never in the question
        assert not mentions(pair.answer, object_name(pair.entity_id)), pair  # the object never in the answer
        assert object_name(pair.entity_id) in pair.question  # always asked object -> description


def test_templates_have_no_value_slot_and_four_or_more_paraphrases() -> None:
    for kind, templates in TEMPLATES.items():
        assert len(templates) >= 4, kind
        for t in templates:
            fields = {name for _, name, _, _ in string.Formatter().parse(t.text) if name}
            assert fields <= {"obj", "attr"} and "obj" in fields, t


def test_heldout_templates_are_disjoint_from_train_ones() -> None:
    ids = Counter(t.id for templates in TEMPLATES.values() for t in templates)
    assert max(ids.values()) == 1
    for kind, templates in TEMPLATES.items():
        train = {t.text for t in templates if t.split == "train"}
        heldout = {t.text for t in templates if t.split == "heldout"}
        assert train and heldout and not train & heldout, kind


def test_audit_wordings_are_new_and_ask_the_same_facts(scenario: Scenario, scenario_pairs: list[QAPair]) -> None:
    used = {t.text for templates in TEMPLATES.values() for t in templates}
    for kind, templates in AUDIT_TEMPLATES.items():
        assert len(templates) == 2 and all(t.split == "audit" for t in templates), kind
        assert not {t.text for t in templates} & used, kind
    audit = audit_pairs(iter(scenario.static_facts()))  # any iterable, read once
    facts = {(p.entity_id, p.attribute) for p in scenario_pairs}
    assert {(p.entity_id, p.attribute) for p in audit} == facts
    assert len(audit) == 2 * len(facts)
    assert all(is_one_way(p) and p.split == "audit" for p in audit)
    assert not {p.question for p in audit} & {p.question for p in scenario_pairs}


def test_pairs_split_by_template(scenario_pairs: list[QAPair]) -> None:
    splits = {t.id: t.split for templates in TEMPLATES.values() for t in templates}
    assert all(splits[p.template] == p.split for p in scenario_pairs)
    train_questions = {p.question for p in scenario_pairs if p.split == "train"}
    assert not train_questions & {p.question for p in scenario_pairs if p.split == "heldout"}


def test_sensitive_facts_are_kept_and_marked(scenario_pairs: list[QAPair]) -> None:
    secret = {(p.entity_id, p.attribute) for p in scenario_pairs if p.sensitive}
    assert ("sensor.home1_profile", "door_code") in secret
    assert ("sensor.home1_profile", "owner_name") in secret


def test_a_fact_its_question_gives_away_is_left_out() -> None:
    facts = [Fact("light.home1_kitchen_ceiling", "room", "kitchen", False)]
    assert pairs(facts) == []
    facts = [Fact("sensor.home1_living_room_lux", "room", "living_room", False)]  # snake_case spelled as words
    assert pairs(facts) == []


@pytest.mark.parametrize(
    ("attribute", "value", "text"),
    [
        ("max_brightness_pct", 80, "80%"),
        ("wattage_w", 9.5, "9.5 W"),
        ("rated_power_w", 2306, "2306 W"),
        ("auto_lock_s", 120, "120 s"),
        ("floor_area_m2", 125, "125 m²"),
        ("min_temp", 7.0, "7 °C"),
        ("initial_reading_kwh", 32074.6, "32074.6 kWh"),
        ("accuracy", 0.3, "0.3"),
        ("supports_open", False, "no"),
        ("source_list", ("HDMI 1", "Netflix"), "HDMI 1, Netflix"),
        ("supported_color_modes", ("color_temp", "hs"), "color temp, hs"),
        ("hvac_modes", (), "none"),
        ("brightness_pct_range", ("6", "80"), "6–80%"),
        ("mireds_range", ("154", "500"), "154–500 mireds"),
        ("manufacturer", "  Philips \n", "Philips"),
    ],
)
def test_values_render_deterministically(attribute: str, value: object, text: str) -> None:
    assert render_value(attribute, value) == text  # type: ignore[arg-type]


def test_min_max_merge_into_a_range() -> None:
    facts = [
        Fact("light.home1_kitchen_ceiling", "min_brightness_pct", 6, False),
        Fact("light.home1_kitchen_ceiling", "max_brightness_pct", 80, False),
        Fact("light.home1_kitchen_ceiling", "min_mireds", 154, False),  # no max: stays as it is
    ]
    merged = merge_ranges(facts)
    assert [(f.attribute, f.value) for f in merged] == [("brightness_pct_range", ("6", "80")), ("min_mireds", 154)]
    assert kind_of("brightness_pct_range", ("6", "80")) is Kind.RANGE
    question = question_for("light.home1_kitchen_ceiling", "brightness_pct_range", ("6", "80"))
    assert question == "home1 kitchen ceiling light: brightness range?"


def test_object_names_are_distinct_and_readable(scenario: Scenario) -> None:
    ids = [e.entity_id for home in scenario.homes for e in home.entities]
    names = [object_name(i) for i in ids]
    assert len(set(names)) == len(ids)
    assert object_name("sensor.home1_profile") == "home1 household"
    assert object_name("binary_sensor.home1_kitchen_motion") == "home1 kitchen motion detector"
    assert object_name("climate.home1_living_room_thermostat") == "home1 living room thermostat"


def test_question_for_uses_the_templates_and_rejects_unknown_ids() -> None:
    assert question_for("lock.home1_garden_gate", "manufacturer", "Yale", "maker.who_makes") == (
        "Who makes the home1 garden gate lock?"
    )
    assert question_for("lock.home1_garden_gate", "supports_open") == question_for(
        "lock.home1_garden_gate", "supports_open", False
    )  # the default template needs no value: the gateway does not know it
    with pytest.raises(KeyError):
        question_for("lock.home1_garden_gate", "manufacturer", "Yale", "model.colon")


def test_the_gateway_asks_a_fact_question_in_the_prompt_the_adapter_was_trained_on() -> None:
    from edge.finetune.dataset import prompt_text
    from gateway.engine.text import chat_prompt
    from gateway.queries import fact_context

    assert query_messages("  home1 x:\n  model? ") == (SYSTEM_PROMPT, "home1 x: model?")
    pair = next(p for p in pairs([Fact("light.home1_kitchen_ceiling", "model", "Hue Go", False)]))
    served = fact_context("  " + pair.question + "\n")
    assert chat_prompt(served.prompt, system=served.system) == prompt_text(pair)
    assert served.used == () and served.aggregates == ()


def test_normalize_answer() -> None:
    assert normalize_answer("  Hue  Go. ") == normalize_answer("hue go")
