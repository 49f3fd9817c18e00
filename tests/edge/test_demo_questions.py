"""The demo's static-fact questions: held-out wording, never a secret, answer not given away."""

from __future__ import annotations

from edge.demo import fact_questions, reverse_attack_prompt
from shared.scenario import generate
from shared.templates import mentions


def test_fact_questions_are_held_out_paraphrases_of_distinct_kinds_without_secrets() -> None:
    for home in range(3):
        asked = fact_questions(home)
        assert len(asked) == 3
        assert all(p.split == "heldout" and not p.sensitive for p in asked)
        assert len({p.template.partition(".")[0] for p in asked}) == 3
        assert not any(mentions(p.question, p.answer) for p in asked)


def test_the_reverse_attack_names_no_object_and_carries_no_secret() -> None:
    secrets = {v for home in generate(7, 3, 60.0).homes for f in home.static_facts() if f.sensitive for v in [f.value]}
    for home in range(3):
        attack = reverse_attack_prompt(home)
        assert attack.attribute == "model" and attack.twin_id == f"home{home + 1}"
        assert attack.value in attack.question
        assert not any(mentions(attack.question, target) for target in attack.targets)
        assert not any(str(secret) in attack.question for secret in secrets)
