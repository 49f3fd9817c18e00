"""The enumeration attacker: the likelihood attack with nothing but answers, and why its target conflicts
with the accuracy target.

An attacker who knows a value ("auto-lock after 45 s") and the home's objects asks the twin the trained
forward question about every candidate object ("What is the front door lock's auto-lock time?") and names
the object whose greedy answer is the value. It needs no weights and no log-likelihoods: only what the
gateway returns to a tenant allowed to query the twin. When every answer is right, exactly the true
object answers the value (values in a description are unique among its candidates), so its top-1 is at
least the twin's forward accuracy on the candidates' facts: a twin that meets the normal-accuracy target
(>= 0.97) cannot keep any attacker who asks by name at chance + 0.02. The gateway's answer to that is
access (answers only to the twin's own tenant), measured in ``llmtwin bench chaos``.

Scored on the likelihood attack's descriptions (``leakage.pick_descriptions``, same seed stream), on the
serving engine with the home's adapter in its bank slot; each candidate question is asked once per home.
A tie (several candidates answer the value) is a miss, as in the likelihood attack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from edge.finetune.dataset import prompt_text
from edge.finetune.evaluate import EVAL_BATCH
from gateway.engine import Engine, GenerationRequest
from shared.attacks import Description, chance
from shared.templates import QAPair, normalize_answer

_EXTRA_TOKENS = 2  # beyond the longest value asked about: its eos, and one to spare


def enumeration_attack(engine: Engine, slots: Mapping[str, int], chosen: Sequence[Description]) -> dict[str, Any]:
    """Top-1 of the enumeration attacker over ``chosen``; ``slots`` maps a twin id to its bank slot."""
    return score_enumeration(chosen, ask_candidates(engine, slots, chosen))


def linking_attack(
    chosen: Sequence[Description], keyed: Sequence[Description], answers: Mapping[tuple[str, str, str], str]
) -> dict[str, Any]:
    """The attacker against pseudonyms who holds the adapter and the pseudonyms the twin is asked by, not the key.

    ``keyed`` are ``chosen`` with every candidate under its pseudonym, ``answers`` the twins' answers to
    them (:func:`ask_candidates`). The attacker asks every pseudonym of the home the forward question, finds
    the one whose answer is the value, and learns its object's domain: from the name, where it keeps it
    ("vetopila light"), or else from the twin's answers about that name's other facts (a fact name, "kisufa
    device", keeps none, but its device class, unit or brightness range give the type back). Then it can
    only guess among the home's real candidates of that domain. Its expected top-1 is the mean of
    1 / (candidates of that domain) where it found the true pseudonym, and 1 / candidates where it found
    none or several (a guess among all). ``bound`` is the same with every pseudonym found: what the
    object's type gives away.
    """
    expected: list[float] = []
    bound: list[float] = []
    for real, fake in zip(chosen, keyed, strict=True):
        value = normalize_answer(real.value)
        found = [i for i, c in enumerate(fake.candidates) if answers[answer_key(fake.twin_id, c)] == value]
        domain = _domain(real.candidates[real.true_index])
        alike = sum(_domain(c) == domain for c in real.candidates)
        bound.append(1 / alike)
        if len(found) != 1:
            expected.append(1 / len(real.candidates))
        elif found[0] == real.true_index:
            expected.append(1 / alike)
        else:
            expected.append(0.0)  # the wrong pseudonym: its domain's candidates never hold the true object
    return {
        "linking_attack_top1": round(sum(expected) / len(expected), 4) if expected else None,
        "linking_attack": {
            "descriptions": len(expected),
            "bound": round(sum(bound) / len(bound), 4) if bound else None,
            "method": "the enumeration attack on the home's pseudonyms (the names the twin is asked by), then a "
            "uniform guess among the real candidates of the found name's domain (kept in a state name; given "
            "back by a fact name's other facts); expected top-1. bound: every pseudonym found, i.e. what the "
            "object's type gives away",
        },
    }


def _domain(pair: QAPair) -> str:
    return pair.entity_id.partition(".")[0]


def score_enumeration(chosen: Sequence[Description], answers: Mapping[tuple[str, str, str], str]) -> dict[str, Any]:
    """The attacker's result given the twins' normalised ``answers`` per (twin id, entity id, attribute)."""
    wins: list[bool] = []
    by_attribute: dict[str, list[bool]] = {}
    for d in chosen:
        value = normalize_answer(d.value)
        matched = [i for i, c in enumerate(d.candidates) if answers[answer_key(d.twin_id, c)] == value]
        won = matched == [d.true_index]
        wins.append(won)
        by_attribute.setdefault(d.attribute, []).append(won)
    expected = chance([len(d.candidates) for d in chosen])
    measured = round(sum(wins) / len(wins), 4) if wins else None
    forward = [answers[answer_key(d.twin_id, c)] == normalize_answer(c.answer) for d in chosen for c in d.candidates]
    return {
        "enumeration_attack_top1": measured,
        "enumeration_attack": {
            "descriptions": len(chosen),
            "questions_asked": len(answers),
            "forward_accuracy": round(sum(forward) / len(forward), 4) if forward else None,
            "chance": round(expected, 4),
            "stderr": None if measured is None else round(math.sqrt(measured * (1 - measured) / len(chosen)), 4),
            "by_attribute": {
                a: {"n": len(w), "top1": round(sum(w) / len(w), 4)} for a, w in sorted(by_attribute.items())
            },
            "method": "per description, the trained forward question about every candidate object asked to the "
            "home's twin (greedy, serving engine); the attacker names the candidate whose answer is the value "
            "(exact match, normalised); a tie is a miss. Needs only answers, no weights",
        },
    }


def answer_key(twin_id: str, pair: QAPair) -> tuple[str, str, str]:
    return twin_id, pair.entity_id, pair.attribute


def ask_candidates(
    engine: Engine, slots: Mapping[str, int], chosen: Sequence[Description]
) -> dict[tuple[str, str, str], str]:
    """Every candidate question of ``chosen`` asked once to its home's twin: normalised answer per key."""
    budget: dict[tuple[str, str, str], int] = {}
    pairs: dict[tuple[str, str, str], QAPair] = {}
    for d in chosen:
        tokens = len(engine.codec.encode(d.value)) + _EXTRA_TOKENS
        for c in d.candidates:
            key = answer_key(d.twin_id, c)
            pairs[key] = c
            budget[key] = max(budget.get(key, 0), tokens)
    keys = sorted(pairs, key=lambda k: len(pairs[k].question))  # similar lengths batch together
    out: dict[tuple[str, str, str], str] = {}
    for start in range(0, len(keys), EVAL_BATCH):
        chunk = keys[start : start + EVAL_BATCH]
        requests = [
            GenerationRequest(f"e{start + i}", prompt_text(pairs[k]), slots[k[0]], max_new_tokens=budget[k])
            for i, k in enumerate(chunk)
        ]
        for k, result in zip(chunk, engine.generate(requests), strict=True):
            out[k] = normalize_answer(result.text)
    return out
