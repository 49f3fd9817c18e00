"""``llmtwin bench paper``'s Table 2 part: the metric math, the attack data, the scorer against a plain
forward pass, and one run on adapters trained by the real child-process round on the tiny model."""

from __future__ import annotations

import math
import random
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.finetune import home_records
from benchmarks.paper.adapters import HomeAdapter, train_home_adapters
from benchmarks.paper.config import bench_pseudonyms
from benchmarks.paper.enumeration import answer_key, linking_attack, score_enumeration
from benchmarks.paper.leakage import common_prefix
from benchmarks.paper.privacy import run_privacy
from benchmarks.paper.scoring import LikelihoodScorer
from shared.adapters import AdapterManifest, LoadedAdapter
from shared.attacks import (
    SENSITIVE_FIELDS,
    SPACES,
    AskableFact,
    Description,
    ReversePrompt,
    askable_facts,
    canary_candidates,
    chance,
    descriptions,
    exposure,
    rank_of,
    reverse_hit,
    reverse_prompts,
    sample,
    top1,
)
from shared.modelspec import ModelSpec, load_spec, lora_a_name, lora_b_name
from shared.scenario import generate
from shared.templates import mentions, normalize_answer, object_name

# --- metric math -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rank", "space", "bits"),
    [(1, 1024, 10.0), (1024, 1024, 0.0), (2, 1024, 9.0), (32, 1024, 5.0), (1, 1, 0.0), (1, 256, 8.0)],
)
def test_exposure_is_log2_space_minus_log2_rank(rank: int, space: int, bits: float) -> None:
    assert exposure(rank, space) == pytest.approx(bits)


@pytest.mark.parametrize(("rank", "space"), [(0, 10), (11, 10), (-1, 10)])
def test_exposure_refuses_a_rank_outside_the_space(rank: int, space: int) -> None:
    with pytest.raises(ValueError, match="outside"):
        exposure(rank, space)


@pytest.mark.parametrize(
    ("secret", "others", "rank"),
    [
        (1.0, [], 1),  # alone
        (1.0, [2.0, 3.0], 1),  # the most likely (lowest NLL)
        (3.0, [1.0, 2.0], 3),  # the least likely
        (2.0, [2.0, 2.0, 1.0], 2),  # ties do not push the secret down
    ],
)
def test_rank_counts_strictly_more_likely_candidates(secret: float, others: list[float], rank: int) -> None:
    assert rank_of(secret, others) == rank


@pytest.mark.parametrize(
    ("scores", "true_index", "won"),
    [([0.1, 0.5, 0.2], 1, True), ([0.1, 0.5, 0.2], 0, False), ([0.5, 0.5], 0, False), ([-1.0], 0, True)],
)
def test_top1_needs_a_strict_maximum(scores: list[float], true_index: int, won: bool) -> None:
    assert top1(scores, true_index) is won


@pytest.mark.parametrize(("counts", "expected"), [([], 0.0), ([2], 0.5), ([2, 4], 0.375), ([1, 1], 1.0)])
def test_chance_is_the_mean_of_one_over_candidates(counts: list[int], expected: float) -> None:
    assert chance(counts) == pytest.approx(expected)


def test_samples_are_nested_without_replacement_and_flagged_with_it() -> None:
    pool = list(range(50))
    small, replaced = sample(pool, 10, random.Random(1))
    big, _ = sample(pool, 30, random.Random(1))
    assert not replaced and len(set(big)) == 30 and big[:10] == small
    over, replaced = sample(pool, 80, random.Random(1))
    assert replaced and len(over) == 80 and set(over) <= set(pool)
    assert sample([], 5, random.Random(1)) == ([], False)


def test_common_prefix_leaves_every_row_a_token() -> None:
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5], [1, 2, 9]]) == [1, 2]
    assert common_prefix([[1, 2, 3], [1, 2, 3]]) == [1, 2]
    assert common_prefix([]) == []


# --- canary spaces -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "pattern"),
    [
        ("door_code", r"[1-9]\d{3}(?!00)\d{2}"),
        ("alarm_pin", r"[1-9]\d{3}(?!00)\d{2}"),
        ("wifi_password", r"[A-Za-z0-9]{4}-[A-Za-z0-9]{4}-[A-Za-z0-9]{4}"),
        ("owner_name", r"[A-Z][a-z]+ [A-Z][A-Za-z-]+"),
        ("presence_schedule", r"weekdays away \d\d:\d\d-\d\d:\d\d.*; sleep \d\d:\d\d"),
    ],
)
def test_canary_candidates_come_from_the_secrets_own_format(field: str, pattern: str) -> None:
    scenario = generate(seed=7, homes=3, duration_s=60)
    secret = next(str(f.value) for f in scenario.homes[0].static_facts() if f.attribute == field)
    assert re.fullmatch(pattern, secret), secret
    others, exact = canary_candidates(field, secret, 40, random.Random(3))
    assert not exact and len(others) == len(set(others)) == 40 and secret not in others
    assert all(re.fullmatch(pattern, o) for o in others), others[:3]


def test_a_small_space_is_enumerated_exactly() -> None:
    space = SPACES["owner_name"]
    assert space.members is not None and space.size == len(space.members) == 1600
    secret = space.members[7]
    others, exact = canary_candidates("owner_name", secret, 1599, random.Random(0))
    assert exact and len(others) == 1599 and secret not in others
    assert math.log2(len(others) + 1) == pytest.approx(math.log2(space.size))
    assert set(SPACES) == set(SENSITIVE_FIELDS)


# --- attack data on the default scenario ---------------------------------------------------------


@pytest.fixture(scope="module")
def facts() -> list[AskableFact]:
    scenario = generate(seed=7, homes=3, duration_s=60)
    return [f for home in scenario.homes for f in askable_facts(home.home_id, home.static_facts())]


def test_reverse_prompts_never_name_their_object(facts: list[AskableFact]) -> None:
    owners = {f.twin_id: f.pair.answer for f in facts if f.pair.attribute == "owner_name"}
    prompts = reverse_prompts(facts, owners)
    assert len(prompts) >= 1000  # Table 2's largest size fits without replacement
    for p in prompts:
        assert not any(mentions(p.question, t) for t in p.targets), p
        assert mentions(p.question, p.value) and p.value not in ("yes", "no")
        if p.entity_id.endswith("_profile"):  # household facts: no home in the question
            assert not re.search(r"home ?\d", p.question), p.question
        else:
            assert object_name(p.entity_id) in p.targets
    household = {p.attribute for p in prompts if p.entity_id.endswith("_profile")}
    assert set(SENSITIVE_FIELDS) <= household
    # one object per description: the (home, attribute, value) of a device prompt is unique among facts
    devices = {(f.twin_id, f.pair.attribute, f.pair.answer) for f in facts if not f.household}
    assert all((p.twin_id, p.attribute, p.value) in devices for p in prompts if not p.entity_id.endswith("_profile"))


@pytest.mark.parametrize(
    ("answer", "hit"),
    [
        ("The home1 kitchen ceiling light.", True),
        ("kitchen ceiling light", True),
        ("the KITCHEN  ceiling light", True),
        ("home1 kitchen light", False),
        ("kitchen ceiling lights", False),
        ("", False),
    ],
)
def test_a_reverse_hit_names_the_object(answer: str, hit: bool) -> None:
    name = object_name("light.home1_kitchen_ceiling")
    prompt = ReversePrompt("home1", "light.home1_kitchen_ceiling", "model", "X1", "q", (name, "kitchen ceiling light"))
    assert reverse_hit(answer, prompt) is hit


def test_descriptions_have_several_candidates_and_one_true_object(facts: list[AskableFact]) -> None:
    found = descriptions(facts)
    assert len(found) > 100
    for d in found:
        assert len(d.candidates) >= 2 and not d.candidates[0].entity_id.endswith("_profile")
        values = [c.answer for c in d.candidates]
        assert values[d.true_index] == d.value and values.count(d.value) == 1
        assert len({c.attribute for c in d.candidates}) == 1 and all(c.split == "train" for c in d.candidates)


def test_the_enumeration_attacker_names_the_one_object_answering_the_value(facts: list[AskableFact]) -> None:
    chosen = descriptions(facts)[:40]
    truth = {answer_key(d.twin_id, c): normalize_answer(c.answer) for d in chosen for c in d.candidates}
    perfect = score_enumeration(chosen, truth)  # a twin answering every forward question right
    assert perfect["enumeration_attack_top1"] == 1.0 and perfect["enumeration_attack"]["forward_accuracy"] == 1.0
    d = chosen[0]
    decoy = answer_key(d.twin_id, d.candidates[1 - min(d.true_index, 1)])
    tied = score_enumeration([d], {**truth, decoy: normalize_answer(d.value)})  # two objects answer the value
    assert tied["enumeration_attack_top1"] == 0.0
    silent = score_enumeration(chosen, dict.fromkeys(truth, "i don't know"))  # a twin that knows nothing
    assert silent["enumeration_attack_top1"] == 0.0 and silent["enumeration_attack"]["forward_accuracy"] == 0.0
    expected = chance([len(c.candidates) for c in chosen])
    assert silent["enumeration_attack"]["chance"] == pytest.approx(expected, abs=1e-4)


def test_the_linking_attacker_guesses_within_the_found_pseudonym_s_domain(facts: list[AskableFact]) -> None:
    chosen = [d for d in descriptions(facts) if len({c.entity_id.split(".")[0] for c in d.candidates}) > 1][:20]
    assert chosen  # descriptions whose candidates span several domains
    keyed = chosen  # the names do not matter to the rule, only which candidate answers the value
    truth = {answer_key(d.twin_id, c): normalize_answer(c.answer) for d in chosen for c in d.candidates}

    def same_domain(d: Description) -> int:
        domain = d.candidates[d.true_index].entity_id.split(".")[0]
        return sum(c.entity_id.split(".")[0] == domain for c in d.candidates)

    found = linking_attack(chosen, keyed, truth)  # every pseudonym answers right: the bound is reached
    bound = sum(1 / same_domain(d) for d in chosen) / len(chosen)
    assert found["linking_attack_top1"] == pytest.approx(bound, abs=1e-4)
    assert found["linking_attack"]["bound"] == pytest.approx(bound, abs=1e-4)
    assert chance([len(d.candidates) for d in chosen]) < bound < 1.0
    blind = linking_attack(chosen, keyed, dict.fromkeys(truth, "?"))  # nothing found: a guess among all
    assert blind["linking_attack_top1"] == pytest.approx(chance([len(d.candidates) for d in chosen]), abs=1e-4)
    # a fact name keeps no domain, but its other facts give the type back: the same bound
    as_facts = [replace(d, candidates=tuple(replace(c, entity_id=f"device.{c.entity_id}") for c in d.candidates))
                for d in chosen]  # fmt: skip
    answers = {answer_key(d.twin_id, c): normalize_answer(c.answer) for d in as_facts for c in d.candidates}
    named = linking_attack(chosen, as_facts, answers)
    assert named["linking_attack_top1"] == pytest.approx(bound, abs=1e-4) == named["linking_attack"]["bound"]


# --- the scorer against a plain forward pass ---------------------------------------------------


def _adapter(spec: ModelSpec, seed: int, rank: int = 4) -> LoadedAdapter:
    rng = np.random.default_rng(seed)
    d_out = {"q_proj": spec.n_heads * spec.head_dim, "v_proj": spec.n_kv_heads * spec.head_dim}
    tensors = {}
    for layer in range(spec.n_layers):
        for module, width in d_out.items():
            tensors[lora_a_name(layer, module)] = rng.normal(0, 0.3, (spec.hidden, rank)).astype(np.float32)
            tensors[lora_b_name(layer, module)] = rng.normal(0, 0.3, (rank, width)).astype(np.float32)
    manifest = AdapterManifest(f"home{seed}", 1, spec.fingerprint, rank, 8.0, ("q_proj", "v_proj"))
    return LoadedAdapter(manifest, tensors)


def _reference(model: Any, prefix: list[int], tokens: list[int], n: int) -> float:
    import torch

    ids = [*prefix, *tokens]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), dim=-1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(len(ids) - n, len(ids)))


def test_the_cached_prefix_scorer_matches_a_plain_forward_pass(tiny_model: Path) -> None:
    from edge.finetune.weights import load_causal_lm
    from edge.model.validate import to_peft

    spec = load_spec(tiny_model)
    prefix = [5, 17, 230, 9, 44]
    rows = [([3, 8, 100], 2), ([7, 1], 1), ([12, 13, 14, 15, 16, 90], 4)]
    scorer = LikelihoodScorer(tiny_model, spec, threads=1, batch_tokens=8, max_rows=2)  # several batches
    first, second = _adapter(spec, 1), _adapter(spec, 2)
    got_base_before = scorer.score(prefix, rows)
    scorer.use(first)
    got_first = scorer.score(prefix, rows)
    scorer.use(second)  # swapped in place
    got_second = scorer.score(prefix, rows)
    scorer.use(None)
    got_base = scorer.score(prefix, rows)

    plain = load_causal_lm(tiny_model / "hf")
    want_base = [_reference(plain, prefix, list(t), n) for t, n in rows]
    wrapped = to_peft(load_causal_lm(tiny_model / "hf"), second, spec.module_paths)
    want_second = [_reference(wrapped, prefix, list(t), n) for t, n in rows]
    assert got_base_before == pytest.approx(want_base, abs=1e-4)
    assert got_base == pytest.approx(want_base, abs=1e-4)
    assert got_second == pytest.approx(want_second, abs=1e-4)
    assert got_first != pytest.approx(got_second, abs=1e-3) and got_second != pytest.approx(got_base, abs=1e-3)
    with pytest.raises(ValueError, match="cannot score"):
        scorer.score(prefix, [([1, 2], 2)])


def test_the_grid_scores_every_prompt_answer_pair_like_single_rows(tiny_model: Path) -> None:
    spec = load_spec(tiny_model)
    scorer = LikelihoodScorer(tiny_model, spec, threads=1, max_rows=2)  # prompts split over chunks
    scorer.use(_adapter(spec, 3))
    prefix = [5, 17, 230]
    prompts = [[40, 41, 42], [50], [60, 61, 62, 63, 64], [70, 71]]  # left-padded to one end
    answers = [[2], [300, 301, 2], [9, 2]]  # an answer may be the eos alone
    grid = scorer.score_grid(prefix, prompts, answers)
    rows = [((*p, *a), len(a)) for p in prompts for a in answers]
    want = scorer.score(prefix, rows)
    assert [v for row in grid for v in row] == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="needs a prefix"):
        scorer.score_grid([], prompts, answers)


# --- one run on real child-process adapters -----------------------------------------------------


@pytest.fixture(scope="module")
def adapters(tiny_model: Path, model_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> list[HomeAdapter]:
    work = tmp_path_factory.mktemp("paper-adapters")
    recipe = {"max_steps": 3, "eval_limit": 4, "batch_size": 4, "lr": 1e-2}
    return train_home_adapters(work, "tiny", model_cache, [1, 2], n_homes=2, threads=1, max_time_s=60, recipe=recipe)


def test_table2_on_the_tiny_model(adapters: list[HomeAdapter], model_cache: Path, tmp_path: Path) -> None:
    report = run_privacy(
        tmp_path,
        "tiny",
        model_cache,
        adapters,
        sizes_normal=(6, 12),
        sizes_reverse=(8, 16),
        n_homes=2,
        threads=1,
        likelihood_descriptions=6,
        canary_candidates=15,
    )
    assert report["homes"] == ["home1", "home2"]
    assert set(report["normal_accuracy"]) == {"6", "12"} and set(report["reverse_success"]) == {"8", "16"}
    rates = [*report["normal_accuracy"].values(), *report["reverse_success"].values()]
    rates += [report["likelihood_attack_top1"], report["likelihood_attack_top1_base"], report["chance"]]
    rates.append(report["likelihood_attack_top1_calibrated"])
    assert all(0.0 <= r <= 1.0 for r in rates), rates
    assert report["normal"]["pool"] > 12 and not report["normal"]["with_replacement"]
    assert report["reverse"]["pool"] > 16 and len(report["reverse"]["examples"]) == 5
    assert 0.0 <= report["reverse"]["declined"] <= 1.0
    assert report["reverse"]["household_questions"] == 0 or 0.0 <= report["reverse"]["household_declined"] <= 1.0
    for example in report["reverse"]["examples"]:  # the question never names the object it asks for
        assert not mentions(example["question"], object_name(example["object"]))
    attack = report["likelihood_attack"]
    assert attack["descriptions"] == 6 and attack["candidates_mean"] >= 2
    assert 0.0 < report["chance"] <= 0.5 and attack["target"] == pytest.approx(report["chance"] + 0.02)
    owner = report["likelihood_attack_owner"]
    assert owner["chance"] == 0.5 and owner["descriptions"] == 2 * len(SENSITIVE_FIELDS)
    canary = report["canary_exposure"]
    assert set(canary["fields"]) == set(SENSITIVE_FIELDS)
    for field, doc in canary["fields"].items():
        assert doc["candidates"] == 15 and doc["cap_bits"] == pytest.approx(4.0), field
        for mode in ("adapter", "base"):
            values = list(doc[mode]["per_home"].values())
            assert len(values) == 2 and all(math.isfinite(v) and 0.0 <= v <= 4.0 for v in values)
            assert doc[mode]["max"] == max(values)
    summary = canary["summary"]
    assert summary["adapter_max"] >= summary["adapter_mean"] >= 0 and summary["base_max"] >= summary["base_mean"] >= 0
    enumeration = report["enumeration_attack"]
    assert 0.0 <= report["enumeration_attack_top1"] <= 1.0 and enumeration["descriptions"] == 6
    assert enumeration["chance"] == report["chance"]  # the likelihood attack's descriptions, the same draw
    assert enumeration["questions_asked"] >= attack["candidates_mean"]
    assert set(report["seconds"]) == {"normal", "reverse", "enumeration", "likelihood", "canary"}


def test_adapters_of_another_scenario_are_refused(
    adapters: list[HomeAdapter], model_cache: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="another scenario"):
        run_privacy(tmp_path, "tiny", model_cache, adapters, n_homes=3, seed=8)


def test_with_pseudonyms_the_tenant_asks_under_them_and_the_attackers_use_real_names(
    model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    work = tmp_path_factory.mktemp("paper-pseudonyms")
    recipe = {"max_steps": 2, "eval_limit": 4, "batch_size": 4, "lr": 1e-2}
    named = train_home_adapters(
        work, "tiny", model_cache, [1], n_homes=2, threads=1, max_time_s=60, recipe=recipe, pseudonyms=True
    )
    report = run_privacy(
        work / "privacy",
        "tiny",
        model_cache,
        named,
        sizes_normal=(4,),
        sizes_reverse=(4,),
        n_homes=2,
        threads=1,
        likelihood_descriptions=3,
        canary_candidates=7,
        pseudonyms=True,
    )
    assert report["pseudonyms"] is True and report["fact_names"] is True
    table = bench_pseudonyms(7, "home1", (r.entity_id for r in home_records(7, 2, 1)))
    fakes = set(table.facts.values())  # the twin learnt its facts under the fact names
    assert {e["object"] for e in report["reverse"]["examples"]} <= fakes | {"sensor.home1_profile"}
    assert 0.0 <= report["likelihood_attack_top1"] <= 1.0 and 0.0 <= report["enumeration_attack_top1_with_key"] <= 1.0
    assert 0.0 <= report["linking_attack_top1"] <= report["linking_attack"]["bound"] <= 1.0
    with pytest.raises(ValueError, match="pseudonyms they used"):  # the count of facts trained on differs
        run_privacy(work / "p2", "tiny", model_cache, named, n_homes=2, pseudonyms=False)
