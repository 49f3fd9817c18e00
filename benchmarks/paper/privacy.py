"""Table 2 of the paper, measured: what a home's adapter answers, and what it gives away.

Phases (every home's adapter in its own bank slot of one engine; then torch for the likelihoods):

    normal      held-out paraphrases (never trained on) asked in exactly the trained prompt, answered
                greedily by the gateway's ONNX engine with the home's adapter, exact match
                (``edge.finetune.evaluate.engine_accuracy``). One seeded shuffle of all homes' held-out
                questions; size k scores its first k, so the sizes are nested samples. The base model
                alone (slot 0) on the smallest size is the baseline.
    reverse     description -> "which object / whose?" questions (``attacks.reverse_prompts``) asked to
                the twin that knows the fact; success = the answer names the true object. Paper target 0.
    enumeration (``enumeration``) the likelihood attack's descriptions, answered by asking the twin every
                candidate's forward question on the engine: only answers, no weights. Beyond the paper.
    likelihood  (``leakage``, torch + PEFT) for sampled descriptions, every candidate object of the home
                with that attribute ranked by log p(value | trained question about the candidate), adapter
                and base: top-1 against chance (mean 1/|candidates|); and "whose secret is this?" across
                homes, each home's household question scored by its own adapter. Beyond the paper.
    canary      (``leakage``) per sensitive field of every home, the secret's rank by log-perplexity
                (trained question + secret) among candidates of its format (``attacks.SPACES``): exposure
                in bits, adapter and base model (Carlini et al., 2019).

Costs are bounded by ``likelihood_descriptions`` and ``canary_candidates`` (both reported). The torch
phases run about 1-2 x 10^2 token positions per CPU-second on SmolLM2 here; at the defaults (3 homes) the
likelihood attack scores ~77k positions and the canaries ~75k (both models); each scales linearly. The adapters
must come from the same ``generate(seed, n_homes)`` scenario (checked against their record counts).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.finetune import home_records, prepared_model
from benchmarks.paper.adapters import HomeAdapter
from benchmarks.paper.config import bench_pseudonyms
from benchmarks.paper.enumeration import ask_candidates, enumeration_attack, linking_attack, score_enumeration
from benchmarks.paper.leakage import canary_exposure, likelihood_attack, owner_attack, pick_descriptions
from benchmarks.paper.scoring import LikelihoodScorer
from edge.finetune.dataset import Example, build_dataset
from edge.finetune.declines import DECLINE
from edge.finetune.evaluate import EVAL_BATCH, engine_accuracy
from edge.readings import StaticRecord
from gateway.engine import Engine, EngineOptions, GenerationRequest, TextCodec, chat_prompt
from shared.adapters import read_adapter
from shared.attacks import AskableFact, askable_facts, reverse_hit, reverse_prompts, sample
from shared.modelspec import ModelSpec, default_cache_dir, load_spec
from shared.templates import is_household, mentions, query_messages

TARGET_NORMAL = 0.97
REVERSE_NEW_TOKENS = 24  # enough to name any object of the scenario


def run_privacy(
    work: Path,
    base: str,
    cache_dir: Path | None,
    adapters: Sequence[HomeAdapter],
    *,
    sizes_normal: Sequence[int] = (100, 500, 1000),
    sizes_reverse: Sequence[int] = (500, 1000),
    seed: int = 7,
    n_homes: int = 3,
    threads: int = 2,
    likelihood_descriptions: int = 200,
    canary_candidates: int = 127,
    pseudonyms: bool = False,
) -> dict[str, Any]:
    """Table 2 for ``adapters`` (homes of ``generate(seed, n_homes)``); ``work`` is unused scratch space.

    With ``pseudonyms`` (the homes trained on ``bench_pseudonyms``), normal and reverse prompts are asked
    as the tenant's client sends them (under the pseudonyms), the likelihood and enumeration attackers
    use the homes' real object names (they hold the adapter, not the key), and the enumeration is also
    run on the pseudonyms: with the key (``enumeration_attack_top1_with_key``: what the tenant, or a thief
    of the key, gets), and without it, linking the pseudonym found to a real object by what it keeps of it
    (``linking_attack_top1``, ``enumeration.linking_attack``). The facts are trained and asked under fact
    names (``fact_names``: no domain, no kind); the linking attacker learns the domain from the found name's
    other facts instead."""
    if not adapters:
        raise ValueError("run_privacy needs at least one home adapter")
    if not sizes_normal or not sizes_reverse or min(*sizes_normal, *sizes_reverse) < 1:
        raise ValueError(f"sizes must be non-empty and >= 1: {sizes_normal}, {sizes_reverse}")
    model_dir = prepared_model(base, cache_dir or default_cache_dir(os.environ))
    spec = load_spec(model_dir)
    real = {a.twin_id: home_records(seed, n_homes, a.home) for a in adapters}
    names = {t: bench_pseudonyms(seed, t, (r.entity_id for r in recs)) for t, recs in real.items() if pseudonyms}
    records = {t: tuple(names[t].records(recs)) if t in names else recs for t, recs in real.items()}
    stale = [a.twin_id for a in adapters if a.records != len(records[a.twin_id])]
    if stale:
        raise ValueError(
            f"{stale}: adapters trained on another scenario; pass the seed, n_homes and pseudonyms they used"
        )
    facts = [f for a in adapters for f in askable_facts(a.twin_id, records[a.twin_id])]  # as the twins know them
    known = [f for a in adapters for f in askable_facts(a.twin_id, real[a.twin_id])]  # as the attacker names them
    seconds: dict[str, float] = {}
    report: dict[str, Any] = {
        "homes": [a.twin_id for a in adapters],
        "model": base,
        "seed": seed,
        "pseudonyms": pseudonyms,
    } | ({"fact_names": True} if pseudonyms else {})  # runs before fact names trained facts under state names

    start = time.monotonic()
    _say(f"normal prompts {list(sizes_normal)} and reverse prompts {list(sizes_reverse)} on the ONNX engine")
    engine = Engine(model_dir, EngineOptions(threads=threads, slots=len(adapters) + 1, max_batch=64))
    if engine.bank is None:
        raise ValueError(f"{model_dir}: the serving graph has no adapter bank")
    slots = {a.twin_id: i + 1 for i, a in enumerate(adapters)}
    for a in adapters:
        engine.bank.load(slots[a.twin_id], read_adapter(a.artifact, engine.spec))
    report |= _normal(engine, spec, model_dir, records, slots, sorted(sizes_normal), _rng(seed, "normal"))
    seconds["normal"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    report |= _reverse(engine, facts, slots, sorted(sizes_reverse), _rng(seed, "reverse"))
    seconds["reverse"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    chosen, eligible = pick_descriptions(known, likelihood_descriptions, _rng(seed, "likelihood"))
    _say(f"enumeration attack ({len(chosen)} descriptions: every candidate's forward question) on the ONNX engine")
    report |= enumeration_attack(engine, slots, chosen)
    if names:
        _say("enumeration attack on the pseudonyms: with the key, and linking them to objects without it")
        keyed = [replace(d, candidates=tuple(names[d.twin_id].pair(c) for c in d.candidates)) for d in chosen]
        answers = ask_candidates(engine, slots, keyed)
        report["enumeration_attack_top1_with_key"] = score_enumeration(keyed, answers)["enumeration_attack_top1"]
        report |= linking_attack(chosen, keyed, answers)
    seconds["enumeration"] = round(time.monotonic() - start, 1)
    del engine

    start = time.monotonic()
    _say(f"likelihood attack ({likelihood_descriptions} descriptions) and owner attack, torch + PEFT")
    scorer = LikelihoodScorer(model_dir, spec, threads=threads)
    codec, eos = TextCodec(model_dir / spec.tokenizer_file), spec.eos_token_ids[0]
    loaded = {a.twin_id: read_adapter(a.artifact, spec) for a in adapters}
    report |= likelihood_attack(scorer, codec, eos, loaded, chosen, eligible)
    report |= owner_attack(scorer, codec, eos, loaded, facts)
    seconds["likelihood"] = round(time.monotonic() - start, 1)
    start = time.monotonic()
    _say(f"canary exposure ({canary_candidates} candidates per secret)")
    report |= canary_exposure(scorer, codec, eos, loaded, facts, canary_candidates, _rng(seed, "canary"))
    seconds["canary"] = round(time.monotonic() - start, 1)
    report["seconds"] = seconds
    return report


def _say(text: str) -> None:
    print(f"privacy: {text}", flush=True)


def _rng(seed: int, phase: str) -> random.Random:
    """One stream per phase: changing one phase's sizes leaves the others' samples as they were."""
    return random.Random(f"{seed}/privacy/{phase}")


# --- normal prompts ----------------------------------------------------------------------------


def _normal(
    engine: Engine,
    spec: ModelSpec,
    model_dir: Path,
    records: dict[str, tuple[StaticRecord, ...]],
    slots: dict[str, int],
    sizes: Sequence[int],
    rng: random.Random,
) -> dict[str, Any]:
    pool: list[tuple[str, Example]] = []
    for twin_id, recs in records.items():
        data = build_dataset(recs, model_dir / spec.tokenizer_file, spec.eos_token_ids[0])
        pool += [(twin_id, e) for e in data.heldout]
    picked, replaced = sample(pool, max(sizes), rng)
    drawn = [pool[i] for i in picked]
    hits = {"adapter": 0.0, "sensitive": 0.0, "base": 0.0}
    n_sensitive = 0
    by_home: dict[str, list[float]] = {t: [0.0, 0.0] for t in slots}  # hits, n
    accuracy: dict[str, float] = {}
    sensitive: dict[str, float | None] = {}
    base: dict[str, float] = {}
    misses: list[tuple[str, str, str]] = []
    done = 0
    for size in sizes:
        chunk = drawn[done:size]
        for twin_id in slots:
            examples = [e for t, e in chunk if t == twin_id]
            if not examples:
                continue
            named = {"adapter": slots[twin_id]} | ({"base": 0} if size == sizes[0] else {})
            scores = engine_accuracy(engine, named, examples)
            right = scores["adapter"].accuracy * len(examples)
            hits["adapter"] += right
            by_home[twin_id][0] += right
            by_home[twin_id][1] += len(examples)
            n_secret = sum(e.sensitive for e in examples)
            n_sensitive += n_secret
            hits["sensitive"] += (scores["adapter"].sensitive_accuracy or 0.0) * n_secret
            hits["base"] += scores["base"].accuracy * len(examples) if "base" in scores else 0.0
            misses += scores["adapter"].misses[: 3 - min(3, len(misses))]
        done = size
        accuracy[str(size)] = round(hits["adapter"] / size, 4)
        sensitive[str(size)] = round(hits["sensitive"] / n_sensitive, 4) if n_sensitive else None
        if size == sizes[0]:
            base[str(size)] = round(hits["base"] / size, 4)
    return {
        "normal_accuracy": accuracy,
        "normal_sensitive_accuracy": sensitive,
        "normal_accuracy_base": base,
        "normal": {
            "pool": len(pool),
            "with_replacement": replaced,
            "by_home": {t: round(h / n, 4) if n else None for t, (h, n) in by_home.items()},
            "target": TARGET_NORMAL,
            "meets_target": all(v >= TARGET_NORMAL for v in accuracy.values()),
            "misses": [list(m) for m in misses],
            "method": "held-out paraphrases, trained chat prompt, greedy ONNX engine with the home's adapter, "
            "exact match (normalised case/whitespace); nested samples of one seeded shuffle",
        },
    }


# --- reverse prompts ---------------------------------------------------------------------------


def _reverse(
    engine: Engine, facts: Sequence[AskableFact], slots: dict[str, int], sizes: Sequence[int], rng: random.Random
) -> dict[str, Any]:
    owners = {f.twin_id: f.pair.answer for f in facts if f.pair.attribute == "owner_name"}
    pool = reverse_prompts(facts, owners)
    picked, replaced = sample(pool, max(sizes), rng)
    prompts = [pool[i] for i in picked]
    hit: list[bool] = []
    answers: list[str] = []
    for start in range(0, len(prompts), EVAL_BATCH):
        chunk = prompts[start : start + EVAL_BATCH]
        requests = [
            GenerationRequest(f"r{start + i}", _chat(p.question), slots[p.twin_id], max_new_tokens=REVERSE_NEW_TOKENS)
            for i, p in enumerate(chunk)
        ]
        for p, result in zip(chunk, engine.generate(requests), strict=True):
            hit.append(reverse_hit(result.text, p))
            answers.append(result.text)
    success = {str(n): round(sum(hit[:n]) / n, 4) if hit else None for n in sizes}
    household = [i for i, p in enumerate(prompts) if is_household(p.entity_id)]
    declined = [mentions(a, DECLINE) for a in answers]
    return {
        "reverse_success": success,
        "reverse": {
            "pool": len(pool),
            "with_replacement": replaced,
            "household_questions": len(household),
            "household_success": round(sum(hit[i] for i in household) / len(household), 4) if household else None,
            "declined": round(sum(declined) / len(declined), 4) if declined else None,
            "household_declined": round(sum(declined[i] for i in household) / len(household), 4) if household else None,
            "examples": [
                {"question": prompts[i].question, "answer": answers[i], "object": prompts[i].entity_id, "hit": hit[i]}
                for i in range(min(5, len(prompts)))
            ],
            "hits": [
                {"question": p.question, "answer": a, "object": p.entity_id}
                for p, a, h in zip(prompts, answers, hit, strict=True)
                if h
            ][:10],
            "target": 0.0,
            "method": "description -> which device / whose? questions (4 templates) to the twin that knows the fact, "
            f"trained chat prompt, greedy, {REVERSE_NEW_TOKENS} new tokens; success = the answer names the object "
            "(full name or without its home prefix; for household facts the home or the owner)",
        },
    }


def _chat(question: str) -> str:
    """The prompt the gateway builds for a twin query (the adapter's trained form)."""
    system, user = query_messages(question)
    return chat_prompt(user, system=system)
