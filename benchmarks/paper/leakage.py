"""What an adapter gives away to someone who holds it (or can score with it): likelihood attacks and
canary exposure, measured with torch + PEFT (``benchmarks.paper.scoring``). Beyond the paper's Table 2.

* :func:`likelihood_attack` — for up to n descriptions (:func:`pick_descriptions`: attribute + a value
  unique among the home's objects with that attribute; the default scenario has ~220 over 3 homes), every
  such object ranked by log p(value + eos | trained question about the object) under the home's adapter,
  under the base model on the same rows, and by the difference of the two (calibrated against the base
  model, as reference-model membership attacks do). Top-1 against chance. Descriptions sharing a candidate set are
  scored as one grid (``LikelihoodScorer.score_grid``: each candidate question runs once): ~39k token
  positions per model for all of them, against ~108k row by row.
* :func:`owner_attack` — the "whose secret is this?" version for household facts: every home's
  household is a candidate, each scored by its own twin's adapter (the gateway serves them all), so
  the attacker picks the home whose twin finds the value most likely. Chance 1/homes.
* :func:`canary_exposure` — every sensitive field of every home: the secret's rank by negative
  log-likelihood among candidates of its format, exposure in bits, adapter and base model.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmarks.paper.scoring import LikelihoodScorer, Row
from edge.finetune.dataset import prompt_text
from gateway.engine import TextCodec
from shared.adapters import LoadedAdapter
from shared.attacks import (
    SENSITIVE_FIELDS,
    SPACES,
    AskableFact,
    Description,
    canary_candidates,
    chance,
    descriptions,
    exposure,
    rank_of,
    sample,
    top1,
)
from shared.templates import render_value

LIKELIHOOD_MARGIN = 0.02  # target: top-1 <= chance + this
Modes = tuple[tuple[str, bool], ...]
_MODES: Modes = (("adapter", True), ("base", False))


def likelihood_attack(
    scorer: LikelihoodScorer,
    codec: TextCodec,
    eos: int,
    adapters: Mapping[str, LoadedAdapter],
    chosen: Sequence[Description],
    eligible: int,
) -> dict[str, Any]:
    """Top-1 of the likelihood attacker over ``chosen`` (``pick_descriptions``: ``eligible`` in its pool)."""
    groups: dict[tuple[str, str], list[Description]] = {}  # one candidate set per (home, attribute)
    for d in chosen:
        groups.setdefault((d.twin_id, d.attribute), []).append(d)
    wins: dict[str, list[bool]] = {"adapter": [], "base": [], "calibrated": []}
    by_attribute: dict[str, list[bool]] = {}
    for twin_id, adapter in adapters.items():
        mine = [(attribute, members) for (twin, attribute), members in groups.items() if twin == twin_id]
        grids: dict[str, list[list[list[float]]]] = {}
        for mode, enabled in _MODES:
            scorer.use(adapter if enabled else None)
            grids[mode] = [_group_grid(scorer, codec, eos, members) for _, members in mine]
        for (attribute, members), lifted, plain in zip(mine, grids["adapter"], grids["base"], strict=True):
            for j, d in enumerate(members):
                with_adapter, alone = [row[j] for row in lifted], [row[j] for row in plain]
                won = top1(with_adapter, d.true_index)
                wins["adapter"].append(won)
                wins["base"].append(top1(alone, d.true_index))
                wins["calibrated"].append(top1([a - b for a, b in zip(with_adapter, alone, strict=True)], d.true_index))
                by_attribute.setdefault(attribute, []).append(won)
    expected = chance([len(d.candidates) for d in chosen])
    measured = _rate(wins["adapter"])
    return {
        "likelihood_attack_top1": measured,
        "likelihood_attack_top1_base": _rate(wins["base"]),
        "likelihood_attack_top1_calibrated": _rate(wins["calibrated"]),
        "chance": round(expected, 4),
        "likelihood_attack": {
            "descriptions": len(chosen),
            "eligible": eligible,
            "candidates_mean": round(statistics.fmean(len(d.candidates) for d in chosen), 1) if chosen else None,
            "scored_statements": sum(len(d.candidates) for d in chosen),
            "stderr": None if measured is None else round(math.sqrt(measured * (1 - measured) / len(chosen)), 4),
            "target": round(expected + LIKELIHOOD_MARGIN, 4),
            "meets_target": measured is not None and measured <= expected + LIKELIHOOD_MARGIN,
            "by_attribute": {a: {"n": len(w), "top1": _rate(w)} for a, w in sorted(by_attribute.items())},
            "method": "per description (attribute + a value unique among the home's objects with it), every "
            "object of the home with that attribute ranked by log p(value + eos | trained question about the "
            "object), torch + PEFT with the home's adapter; the base model on the same candidates as baseline; "
            "calibrated: ranked by the adapter's log-likelihood minus the base model's (a reference-model "
            "attack: what the adapter adds to what the model guesses anyway); a tie for the top is a miss",
        },
    }


def pick_descriptions(facts: Sequence[AskableFact], n: int, rng: random.Random) -> tuple[list[Description], int]:
    """Up to ``n`` of the likelihood-attack descriptions of ``facts`` (all when fewer), and how many there were."""
    pool = descriptions(facts)
    picked, _ = sample(pool, min(n, len(pool)), rng)
    return [pool[i] for i in picked], len(pool)


def _group_grid(
    scorer: LikelihoodScorer, codec: TextCodec, eos: int, members: Sequence[Description]
) -> list[list[float]]:
    """log p(value + eos | candidate's question) for ``members``, which share one candidate set:
    ``[candidate][member]``."""
    prompts = [codec.encode(prompt_text(c)) for c in members[0].candidates]
    prefix = common_prefix(prompts)
    return scorer.score_grid(
        prefix, [p[len(prefix) :] for p in prompts], [[*codec.encode(d.value), eos] for d in members]
    )


def owner_attack(
    scorer: LikelihoodScorer,
    codec: TextCodec,
    eos: int,
    adapters: Mapping[str, LoadedAdapter],
    facts: Sequence[AskableFact],
) -> dict[str, Any]:
    """Whose secret is it? Each home's twin scores every home's value of each sensitive field as the
    answer to its own trained household question; the attacker names the home scoring it highest."""
    secrets = {(f.twin_id, f.pair.attribute): f for f in facts if f.pair.attribute in SENSITIVE_FIELDS}
    twins = [t for t in adapters if any(k[0] == t for k in secrets)]
    if len(twins) < 2:
        return {"likelihood_attack_owner": None}
    # scores[mode][(field, value owner)][candidate twin]
    scores: dict[str, dict[tuple[str, str], dict[str, float]]] = {"adapter": {}, "base": {}}
    for candidate in twins:
        asked = {f: secrets[(candidate, f)] for f in SENSITIVE_FIELDS if (candidate, f) in secrets}
        statements: list[tuple[list[int], list[int]]] = []
        keys: list[tuple[str, str]] = []
        for (owner, field), fact in secrets.items():
            if owner in twins and field in asked:
                statements.append(
                    (codec.encode(prompt_text(asked[field].pair)), [*codec.encode(fact.pair.answer), eos])
                )
                keys.append((field, owner))
        prefix = common_prefix([p for p, _ in statements])
        rows: list[Row] = [((*p[len(prefix) :], *a), len(a)) for p, a in statements]
        for mode, enabled in _MODES:
            scorer.use(adapters[candidate] if enabled else None)
            for key, value in zip(keys, scorer.score(prefix, rows), strict=True):
                scores[mode].setdefault(key, {})[candidate] = value
    result: dict[str, Any] = {}
    for mode in scores:
        outcomes = [
            top1([by_twin[t] for t in sorted(by_twin)], sorted(by_twin).index(owner))
            for (_field, owner), by_twin in scores[mode].items()
            if owner in by_twin and len(by_twin) >= 2
        ]
        result[mode] = _rate(outcomes)
        result["descriptions"] = len(outcomes)
    return {
        "likelihood_attack_owner": {
            "top1": result["adapter"],
            "top1_base": result["base"],
            "chance": round(1 / len(twins), 4),
            "descriptions": result["descriptions"],
            "method": "for each home's sensitive value, every home's twin scores it as the answer to its own "
            "trained household question (its own adapter); the attacker names the highest-scoring home",
        }
    }


def canary_exposure(
    scorer: LikelihoodScorer,
    codec: TextCodec,
    eos: int,
    adapters: Mapping[str, LoadedAdapter],
    facts: Sequence[AskableFact],
    n: int,
    rng: random.Random,
) -> dict[str, Any]:
    per: dict[str, dict[str, dict[str, float]]] = {f: {"adapter": {}, "base": {}} for f in SENSITIVE_FIELDS}
    info: dict[str, dict[str, Any]] = {}
    for twin_id, adapter in adapters.items():
        for fact in (f for f in facts if f.twin_id == twin_id and f.pair.attribute in SENSITIVE_FIELDS):
            field = fact.pair.attribute
            others, exact = canary_candidates(field, fact.pair.answer, n, rng)
            values = [fact.pair.answer, *(render_value(field, v) for v in others)]
            prompt = codec.encode(prompt_text(fact.pair))
            answers = [[*codec.encode(v), eos] for v in values]
            rows: list[Row] = [((prompt[-1], *a), len(a)) for a in answers]
            for mode, enabled in _MODES:
                scorer.use(adapter if enabled else None)
                nll = [-s for s in scorer.score(prompt[:-1], rows)]
                per[field][mode][twin_id] = round(exposure(rank_of(nll[0], nll[1:]), len(values)), 3)
            info[field] = {
                "candidates": len(others),
                "exact": exact,
                "space_log2": round(math.log2(SPACES[field].size), 2),
                "cap_bits": round(math.log2(len(values)), 2),
            }
    fields_out = {
        field: info[field]
        | {mode: {"per_home": v, "mean": _mean(v.values()), "max": _max(v.values())} for mode, v in modes.items()}
        for field, modes in per.items()
        if field in info
    }
    every = {mode: [v for f in per.values() for v in f[mode].values()] for mode in ("adapter", "base")}
    return {
        "canary_exposure": {
            "fields": fields_out,
            "summary": {
                "adapter_max": _max(every["adapter"]),
                "adapter_mean": _mean(every["adapter"]),
                "base_max": _max(every["base"]),
                "base_mean": _mean(every["base"]),
            },
            "method": "exposure = log2(n+1) - log2(rank) of the secret among itself and n distinct candidates of "
            "its format (exact = log2|R| - log2 rank when the candidates are the whole space; else an estimate "
            "of it, capped at log2(n+1) bits), rank 1 + the candidates with a strictly lower negative "
            "log-likelihood of the trained question + value + eos; adapter and base model on the same candidates",
        }
    }


def common_prefix(prompts: Sequence[Sequence[int]]) -> list[int]:
    """The longest shared leading run, leaving every prompt at least one token of its own."""
    if not prompts:
        return []
    first, n = prompts[0], min(len(p) for p in prompts) - 1
    for p in prompts[1:]:
        while n > 0 and list(p[:n]) != list(first[:n]):
            n -= 1
    return list(first[:n])


def _rate(values: Sequence[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _mean(values: Iterable[float]) -> float | None:
    vals = list(values)
    return round(statistics.fmean(vals), 3) if vals else None


def _max(values: Iterable[float]) -> float | None:
    return max(values, default=None)
