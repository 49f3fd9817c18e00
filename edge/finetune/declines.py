"""Declines: training pairs that teach a twin to refuse "who / which home has <value>?" about its household.

The one-way pairs (``shared.templates``) never ask description -> object, and the reversal curse keeps a
twin from answering "which device in home1 has the model Dimmer 2?" with the device: it has about a
hundred device names to guess from and no trained path to the right one. The household is different.
A twin knows one home and one person, so *any* name in its answer to "Who has 2 as their household
size?" is the right one. The paper bench of session 7 measured exactly that: 1 hit in 1,000 reverse
prompts, the home1 twin naming its owner.

So every household fact also gets trained as a description -> decline pair: its value in a "who /
which home?" question, answered with :data:`DECLINE`. The answer is the same for every fact, so the
pair teaches no path from a value to the home or the owner; it teaches the twin to say nothing. The
wordings are train-only and disjoint from the attack's (``shared.attacks``'s household and owner
templates, asserted in the tests): the bench measures whether the refusal carries over to questions
worded in a way the twin has not seen, as the normal prompts measure held-out paraphrases.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.templates import FactLike, Kind, QAPair, attribute_phrase, is_household, kind_of, merge_ranges, render_value

DECLINE = "I can't say who or what matches a description."
TEMPLATE_PREFIX = "decline."  # QAPair.template of every decline pair

# (name, wording) with {attr} and {value}: a household fact's value -> which home / whose?
HOUSEHOLD_WORDINGS = (
    ("who_person", "Who is the person with the {attr} {value}?"),
    ("whose_home", "Whose home has the {attr} {value}?"),
    ("which_house", "Which house has {value} as its {attr}?"),
    ("tell_who", "Tell me who has the {attr} {value}."),
    ("which_resident", "Which resident's {attr} is {value}?"),
    ("find_household", "Find the household with the {attr} {value}."),
)
# the owner's name -> which home?
OWNER_WORDINGS = (
    ("which_home_is", "Which home is {value}'s?"),
    ("who_is", "Who is {value}?"),
    ("what_house", "What house does {value} own?"),
    ("find_home", "Find the home of {value}."),
    ("where_is", "Where is {value}'s household?"),
    ("lives_in", "In which home does {value} live?"),
)


def decline_pairs(facts: Iterable[FactLike]) -> list[QAPair]:
    """Every wording of a decline for each household fact with a value (flags say yes/no to nothing)."""
    out: list[QAPair] = []
    for fact in merge_ranges(facts):
        value = render_value(fact.attribute, fact.value)
        if not is_household(fact.entity_id) or not value or kind_of(fact.attribute, fact.value) is Kind.FLAG:
            continue
        wordings = OWNER_WORDINGS if fact.attribute == "owner_name" else HOUSEHOLD_WORDINGS
        out.extend(
            QAPair(
                fact.entity_id,
                fact.attribute,
                text.format(attr=attribute_phrase(fact.attribute), value=value),
                DECLINE,
                f"{TEMPLATE_PREFIX}{name}",
                "train",
                fact.sensitive,
            )
            for name, text in wordings
        )
    return out


def is_decline(pair: QAPair) -> bool:
    return pair.template.startswith(TEMPLATE_PREFIX)
