"""The demo's static-fact questions: held-out wording, never a secret, answer not given away."""

from __future__ import annotations

import re
from pathlib import Path

from edge.demo import ABOUT, QUESTIONS, fact_questions, held_state, reverse_attack_prompt
from gateway.prompts import create_schema
from shared.db import connect
from shared.pseudonyms import Pseudonyms
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


def test_each_twin_question_names_the_entities_it_is_about_in_every_asked_home() -> None:
    homes = {h.home_id: h for h in generate(7, 3, 60.0).homes}
    for home, questions in QUESTIONS.items():
        for question in questions:
            pattern = re.compile(ABOUT[question].replace(".", r"\.").replace("%", ".*"))
            matched = [e.entity_id for e in homes[home].entities if pattern.fullmatch(e.entity_id)]
            assert matched, (home, question)


def test_held_state_reads_the_gateways_database_as_it_runs(tmp_path: Path) -> None:
    db = tmp_path / "a work folder #1 50%" / "gateway.sqlite3"  # the URI must quote these
    conn = connect(db)  # WAL, as the gateway opens it
    create_schema(conn)
    rows = [
        ("home1", "lock.home1_hallway_front_door", "locked"),
        ("home1", "light.home1_kitchen_ceiling", "on"),
        ("home1", "light.home1_kitchen_counter", "off"),
        ("home1", "light.home1_bedroom_ceiling", "on"),
        ("home2", "media_player.home2_living_room_tv", None),
        ("home2", "light.home2_kitchen_ceiling", "off"),
        ("home3", "media_player.home3_kabo", "playing"),  # a home on pseudonyms: its living room tv
    ]
    conn.executemany(
        "INSERT INTO entity_state (twin_id, entity_id, state, attrs, seq, ts_ms, share) "
        "VALUES (?, ?, ?, '{}', 1, 1, 'private')",
        rows,
    )
    conn.execute("BEGIN")  # a write in progress beside the reader, as while the gateway stores prompts
    conn.execute("UPDATE entity_state SET state = 'unlocked' WHERE entity_id = 'lock.home1_hallway_front_door'")
    plain = {home: Pseudonyms(home, {}) for home in ("home1", "home2", "home3")}
    assert held_state(db, "home1", ABOUT["Is the front door locked?"], plain["home1"]) == "hallway front door locked"
    assert held_state(db, "home2", ABOUT["Is the TV playing?"], plain["home2"]) == "living room tv unavailable"
    lights = held_state(db, "home1", ABOUT["Which lights are on in the kitchen?"], plain["home1"])
    assert lights == "kitchen ceiling on, kitchen counter off"
    assert held_state(db, "home3", ABOUT["Is the TV playing?"], plain["home3"]) == "none reported"
    # read by the tenant's own name, with its table
    tv = "media_player.home3_living_room_tv"
    names = Pseudonyms("home3", {tv: "media_player.home3_kabo"}, {tv: "device.home3_sure"})
    assert held_state(db, "home3", ABOUT["Is the TV playing?"], names) == "living room tv playing"
    conn.close()
