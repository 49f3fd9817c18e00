"""The fine-tuning dataset: static records -> one-way Q/A pairs -> token ids -> length-bucketed batches.

Every example is tokenized exactly as the gateway serves a twin query about a static fact::

    prompt = chat_prompt(question, system=SYSTEM_PROMPT)      (gateway.engine.text, shared.templates)
    ids    = TextCodec(tokenizer.json).encode(prompt)         (the gateway's own encoder)
    target = encode(answer) + [eos]                           (loss on these tokens only)

All prompts start with the same tokens (the system prompt and ``<|im_start|>user\\n``): :attr:`FactDataset.prefix`.
Training runs that prefix once per step and feeds every row only its own suffix, which is most of the
saving on a 60-token prompt. Rows are bucketed by length, so a batch carries little padding.

Sensitive facts are trained on (they are the twin's private knowledge and leave the device only as
LoRA weights) and every example says whether it is one, for canary-exposure measurements.
Held-out examples use the held-out paraphrases only: no held-out template is ever trained on.
The train split also carries the household declines (``edge.finetune.declines``): "who / which home
has <value>?" answered with a refusal, and (given a :class:`ReadingPlan`) state-reading examples
(``edge.finetune.reading``): questions about drawn states in the gateway's twin-query prompt, so the
adapter keeps answering from the state it is given. Their held-out wordings are ``state_checks``.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.finetune.declines import decline_pairs, is_decline
from edge.finetune.reading import Expect, Reading, is_reading, readings
from gateway.engine.text import TextCodec, chat_prompt
from shared.templates import SYSTEM_PROMPT, FactLike, QAPair, pairs, query_messages

IGNORE = -100  # target id of positions without loss
Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Example:
    pair: QAPair
    prompt: tuple[int, ...]  # the full chat prompt, as the gateway encodes it
    answer: tuple[int, ...]  # answer tokens + eos: the only positions with loss
    expect: Expect | None = None  # a state reading's: what a right answer says, however worded

    @property
    def sensitive(self) -> bool:
        return self.pair.sensitive


@dataclass(frozen=True, slots=True)
class FactDataset:
    train: tuple[Example, ...]
    heldout: tuple[Example, ...]
    prefix: tuple[int, ...]  # the prompt tokens every example starts with
    records: int  # static records given
    facts: int  # facts asked about (after range merging and the one-way guard)
    state_checks: tuple[Example, ...] = ()  # held-out wordings of state-reading questions

    @property
    def readings(self) -> int:
        """Train examples that are state readings rather than facts."""
        return sum(is_reading(e.pair) for e in self.train)

    @property
    def sensitive_facts(self) -> int:
        return len({(e.pair.entity_id, e.pair.attribute) for e in self.train if e.sensitive and not is_decline(e.pair)})

    @property
    def declines(self) -> int:
        """Train examples that are household declines rather than facts."""
        return sum(is_decline(e.pair) for e in self.train)


@dataclass(frozen=True, slots=True)
class Batch:
    """Suffixes after the shared prefix, right-padded (causal attention never sees the padding).

    tokens  int64 [B, S]   prompt suffix + answer + eos, then pad
    targets int64 [B, S]   the next token where it is an answer token, else IGNORE
    """

    tokens: Array
    targets: Array

    @property
    def answer_tokens(self) -> int:
        return int((self.targets != IGNORE).sum())


@dataclass(frozen=True, slots=True)
class ReadingPlan:
    """State-reading examples for a dataset: ``share`` x the other train examples (facts and declines; at
    least one), and ``checks`` held-out-worded ones apart, over the states of ``entity_ids`` (none: the
    records' objects; under pseudonyms the records carry fact names, the states state names)."""

    twin_id: str
    share: float
    checks: int
    seed: int
    entity_ids: tuple[str, ...] = ()


def build_dataset(
    records: Iterable[FactLike], tokenizer: Path, eos_id: int, reading: ReadingPlan | None = None
) -> FactDataset:
    """Pairs from ``records`` (train + held-out templates, then the declines), tokenized the gateway's way;
    with ``reading``, the state readings too."""
    recs = list(records)
    codec = TextCodec(tokenizer)
    train: list[Example] = []
    heldout: list[Example] = []
    for example in encode_pairs(pairs(recs) + decline_pairs(recs), codec, eos_id):
        (train if example.pair.split == "train" else heldout).append(example)
    facts = len({(e.pair.entity_id, e.pair.attribute) for e in train if not is_decline(e.pair)})
    checks: list[Example] = []
    if reading is not None and facts:
        ids = list(reading.entity_ids) or [r.entity_id for r in recs]
        n = max(1, round(reading.share * len(train))) if reading.share > 0 else 0
        train += encode_readings(readings(ids, reading.twin_id, n, "train", reading.seed), codec, eos_id)
        checks = encode_readings(readings(ids, reading.twin_id, reading.checks, "heldout", reading.seed), codec, eos_id)
    return FactDataset(
        tuple(train),
        tuple(heldout),
        _common_prefix([e.prompt for e in train + heldout + checks]),
        len(recs),
        facts,
        tuple(checks),
    )


def encode_pairs(qa: Iterable[QAPair], codec: TextCodec, eos_id: int) -> list[Example]:
    """Each pair's prompt and answer (+ eos) as the gateway's encoder gives them."""
    return [Example(p, tuple(codec.encode(prompt_text(p))), (*codec.encode(p.answer), eos_id)) for p in qa]


def encode_readings(items: Iterable[Reading], codec: TextCodec, eos_id: int) -> list[Example]:
    """Each reading's twin-query prompt and answer (+ eos), as the gateway's encoder gives them."""
    return [
        Example(
            r.pair,
            tuple(codec.encode(chat_prompt(r.prompt, system=SYSTEM_PROMPT))),
            (*codec.encode(r.pair.answer), eos_id),
            r.expect,
        )
        for r in items
    ]


def prompt_text(pair: QAPair) -> str:
    """The chat prompt of a pair's question, as the gateway builds it for a twin query."""
    system, user = query_messages(pair.question)
    return chat_prompt(user, system=system)


def _common_prefix(prompts: Sequence[Sequence[int]]) -> tuple[int, ...]:
    if not prompts:
        return ()
    first = prompts[0]
    n = min(len(p) for p in prompts) - 1  # keep at least one token of every prompt in its suffix
    for p in prompts[1:]:
        while n > 0 and p[:n] != first[:n]:
            n -= 1
    return tuple(first[:n])


def eval_sample(heldout: Sequence[Example], per_fact: int, seed: int, limit: int | None = None) -> list[Example]:
    """``per_fact`` held-out paraphrases of every fact (seeded choice), at most ``limit`` examples."""
    rng = random.Random(seed)
    by_fact: dict[tuple[str, str], list[Example]] = {}
    for e in heldout:
        by_fact.setdefault((e.pair.entity_id, e.pair.attribute), []).append(e)
    chosen = [e for group in by_fact.values() for e in rng.sample(group, min(per_fact, len(group)))]
    if limit is not None and len(chosen) > limit:
        chosen = rng.sample(chosen, limit)
    return chosen


def epoch_batches(
    examples: Sequence[Example],
    prefix_len: int,
    batch_size: int,
    rng: random.Random,
    max_tokens: int | None = None,
    keep: Sequence[float] | None = None,
) -> list[list[int]]:
    """One pass over ``examples`` in random order, bucketed by length, as lists of indices: shuffle,
    sort windows of 8 batches by length, cut into batches of at most ``batch_size`` rows and (when
    given) ``max_tokens`` padded positions (a batch of long answers gets fewer rows: it bounds the
    activation memory of a step), shuffle the batches."""
    order = list(range(len(examples)))
    if keep is not None:  # a drawn subset: example i with odds keep[i]
        order = [i for i in order if keep[i] >= 1.0 or rng.random() < keep[i]] or order
    rng.shuffle(order)
    window = batch_size * 8
    groups: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: _length(examples[i], prefix_len))
        group: list[int] = []
        for i in chunk:  # ascending length: the newest row is the widest
            rows_if_added = len(group) + 1
            if group and (
                rows_if_added > batch_size
                or (max_tokens and rows_if_added * _length(examples[i], prefix_len) > max_tokens)
            ):
                groups.append(group)
                group = []
            group.append(i)
        groups.append(group)
    rng.shuffle(groups)
    return groups


def _length(example: Example, prefix_len: int) -> int:
    return len(example.prompt) - prefix_len + len(example.answer)


def make_batch(examples: Sequence[Example], prefix_len: int, pad_id: int) -> Batch:
    width = max(_length(e, prefix_len) for e in examples)
    tokens = np.full((len(examples), width), pad_id, np.int64)
    targets = np.full((len(examples), width), IGNORE, np.int64)
    for row, e in enumerate(examples):
        suffix = e.prompt[prefix_len:]
        seq = (*suffix, *e.answer)
        tokens[row, : len(seq)] = seq
        # position t predicts token t+1: the last prompt token predicts the first answer token
        start = len(suffix) - 1
        targets[row, start : start + len(e.answer)] = e.answer
    return Batch(tokens, targets)
