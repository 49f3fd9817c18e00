"""edge.finetune.dataset: gateway-identical tokens, answer-only targets, length-bucketed epochs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from edge.finetune.dataset import IGNORE, FactDataset, build_dataset, epoch_batches, eval_sample, make_batch
from edge.readings import StaticRecord
from gateway.engine.text import TextCodec, chat_prompt
from shared.modelspec import load_spec
from shared.templates import SYSTEM_PROMPT

RECORDS = (
    StaticRecord("light.home1_kitchen_ceiling", "manufacturer", "Shelly"),
    StaticRecord("light.home1_kitchen_ceiling", "min_brightness_pct", 6),
    StaticRecord("light.home1_kitchen_ceiling", "max_brightness_pct", 80),
    StaticRecord("light.home1_kitchen_ceiling", "room", "kitchen"),  # given away by the name: left out
    StaticRecord("lock.home1_hallway_front_door", "supports_open", False),
    StaticRecord("sensor.home1_profile", "door_code", "195119", sensitive=True),
)


@pytest.fixture(scope="module")
def data(tiny_model: Path) -> FactDataset:
    spec = load_spec(tiny_model)
    return build_dataset(RECORDS, tiny_model / spec.tokenizer_file, spec.eos_token_ids[0])


def test_examples_are_tokenized_like_a_gateway_query(data: FactDataset, tiny_model: Path) -> None:
    codec = TextCodec(tiny_model / "tokenizer.json")
    for e in data.train + data.heldout:
        assert e.prompt == tuple(codec.encode(chat_prompt(e.pair.question, system=SYSTEM_PROMPT)))
        assert e.answer[:-1] == tuple(codec.encode(e.pair.answer)) and e.answer[-1] == 2  # then eos
        assert e.prompt[: len(data.prefix)] == data.prefix
    assert codec.decode(list(data.prefix)).startswith("system\n" + SYSTEM_PROMPT)


def test_splits_use_their_own_templates(data: FactDataset) -> None:
    assert data.records == len(RECORDS) and data.facts == 4  # range merged, room left out
    assert {e.pair.split for e in data.train} == {"train"}
    assert {e.pair.split for e in data.heldout} == {"heldout"}
    assert not {e.pair.template for e in data.train} & {e.pair.template for e in data.heldout}
    assert {e.pair.question for e in data.train}.isdisjoint(e.pair.question for e in data.heldout)


def test_sensitive_facts_are_trained_and_marked(data: FactDataset) -> None:
    secret = [e for e in data.train if e.sensitive]
    assert secret and all(e.pair.attribute == "door_code" for e in secret)
    assert data.sensitive_facts == 1


def test_targets_cover_exactly_the_answer(data: FactDataset) -> None:
    examples = data.train[:5]
    batch = make_batch(examples, len(data.prefix), pad_id=2)
    for row, e in enumerate(examples):
        start = len(e.prompt) - len(data.prefix) - 1  # the last prompt token predicts the first answer token
        assert tuple(batch.tokens[row, start + 1 : start + 1 + len(e.answer)]) == e.answer
        assert tuple(batch.targets[row, start : start + len(e.answer)]) == e.answer
        assert int((batch.targets[row] != IGNORE).sum()) == len(e.answer)
    assert batch.answer_tokens == sum(len(e.answer) for e in examples)


def test_an_epoch_visits_every_example_once_in_length_buckets(data: FactDataset) -> None:
    groups = epoch_batches(data.train, len(data.prefix), 3, random.Random(0))
    assert sorted(i for g in groups for i in g) == list(range(len(data.train)))
    assert max(len(g) for g in groups) <= 3
    assert groups == epoch_batches(data.train, len(data.prefix), 3, random.Random(0))  # seeded


def test_an_epoch_can_draw_a_subset(data: FactDataset) -> None:
    n = len(data.train)
    everything = epoch_batches(data.train, len(data.prefix), 3, random.Random(0), keep=[1.0] * n)
    assert everything == epoch_batches(data.train, len(data.prefix), 3, random.Random(0))  # all kept: same epoch
    half = [1.0 if i % 2 else 0.0 for i in range(n)]
    drawn = sorted(i for g in epoch_batches(data.train, len(data.prefix), 3, random.Random(0), keep=half) for i in g)
    assert drawn == [i for i in range(n) if i % 2]
    nothing = epoch_batches(data.train, len(data.prefix), 3, random.Random(0), keep=[0.0] * n)
    assert sorted(i for g in nothing for i in g) == list(range(n))  # an empty draw would be no epoch: all


def test_eval_sample_takes_paraphrases_per_fact(data: FactDataset) -> None:
    one = eval_sample(data.heldout, per_fact=1, seed=0)
    assert len(one) == data.facts
    assert len({(e.pair.entity_id, e.pair.attribute) for e in one}) == data.facts
    assert len(eval_sample(data.heldout, per_fact=2, seed=0)) == len(data.heldout)
    assert len(eval_sample(data.heldout, per_fact=2, seed=0, limit=3)) == 3


def test_no_records_no_examples(tiny_model: Path) -> None:
    empty = build_dataset([], tiny_model / "tokenizer.json", 2)
    assert empty.train == () and empty.heldout == () and empty.facts == 0 and empty.prefix == ()


def test_a_token_budget_shrinks_batches_of_long_rows(data: FactDataset) -> None:
    prefix = len(data.prefix)
    width = {i: len(e.prompt) - prefix + len(e.answer) for i, e in enumerate(data.train)}
    budget = 2 * max(width.values())
    groups = epoch_batches(data.train, prefix, 8, random.Random(1), max_tokens=budget)
    assert sorted(i for g in groups for i in g) == list(range(len(data.train)))
    assert all(len(g) * max(width[i] for i in g) <= budget for g in groups)
    tiny = epoch_batches(data.train, prefix, 8, random.Random(1), max_tokens=1)  # one row always fits
    assert all(len(g) == 1 for g in tiny)
