"""Keyed pseudonyms: what the adapter is trained on under them, and the tenant's rewriting of questions."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

import shared.pseudonyms as ps
from benchmarks.finetune import home_records
from gateway.prompts import StoredState
from gateway.queries import relevant
from shared.errors import ConfigError
from shared.pseudonyms import Pseudonyms, fact_pseudonym, for_device, load_or_create_key, pseudonym
from shared.semantic import EntityState
from shared.templates import is_one_way, object_name, pairs

KEY = bytes(range(32))
HOME1 = home_records(7, 3, 1)


def table(key: bytes = KEY) -> Pseudonyms:
    return Pseudonyms.derive(key, "home1", (r.entity_id for r in HOME1))


def test_a_pseudonym_keeps_domain_and_home_and_hides_the_object_words() -> None:
    fake = pseudonym(KEY, "home1", "light.home1_kitchen_ceiling")
    domain, _, obj = fake.partition(".")
    assert domain == "light" and obj.startswith("home1_") and "kitchen" not in obj
    assert fake == pseudonym(KEY, "home1", "light.home1_kitchen_ceiling")  # stable across calls and rounds
    assert fake != pseudonym(bytes(32), "home1", "light.home1_kitchen_ceiling")  # another key, another name
    assert pseudonym(KEY, "home1", "sensor.home1_profile") == "sensor.home1_profile"  # the household is the home
    with pytest.raises(ValueError, match="16 bytes"):
        pseudonym(b"short", "home1", "light.home1_kitchen_ceiling")


def test_a_fact_name_keeps_the_home_alone_and_is_unrelated_to_the_state_name() -> None:
    lock, contact = "lock.home1_hallway_front_door", "binary_sensor.home1_hallway_front_door"
    fact = fact_pseudonym(KEY, "home1", lock)
    assert fact.startswith("device.home1_") and object_name(fact).endswith(" device")  # no domain, no kind
    assert "_" not in fact.removeprefix("device.home1_")  # one keyed word
    state_word = pseudonym(KEY, "home1", lock).partition("_")[2].partition("_")[0]
    assert state_word not in fact  # another word than the state name's: unlinkable without the key
    assert fact != fact_pseudonym(KEY, "home1", contact)  # a lock and its door's contact sensor differ
    assert fact == fact_pseudonym(KEY, "home1", lock) != fact_pseudonym(bytes(32), "home1", lock)
    assert fact_pseudonym(KEY, "home1", "sensor.home1_profile") == "sensor.home1_profile"


def test_tables_of_different_id_sets_agree_and_collisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    full = table()
    part = Pseudonyms.derive(KEY, "home1", list(full.table)[:5])
    assert all(full.table[e] == fake for e, fake in part.table.items())
    assert len(set(full.table.values())) == len(full.table)
    assert len(set(full.facts.values())) == len(full.facts) == len(full.table)
    real_spell = ps._spell
    monkeypatch.setattr(ps, "_spell", lambda *_: "bababa")
    with pytest.raises(ValueError, match=r"same pseudonym .*make a new pseudonym key"):
        Pseudonyms.derive(KEY, "home1", ["light.home1_a", "light.home1_b"])
    # two objects alike in nothing but their word's spelling, across domains: refused (reveal would be ambiguous)
    with pytest.raises(ValueError, match=r"same pseudonym bababa"):
        Pseudonyms.derive(KEY, "home1", ["light.home1_a", "switch.home1_b"])
    # like-worded objects share their state name's word: no collision
    monkeypatch.setattr(ps, "_spell", lambda key, twin, stem: "bababa" if stem == "a" else real_spell(key, twin, stem))
    shared = Pseudonyms.derive(KEY, "home1", ["lock.home1_a_door", "binary_sensor.home1_a_door"])
    assert set(shared.table.values()) == {"lock.home1_bababa_door", "binary_sensor.home1_bababa_door"}
    # a fact name's word spelled like a state name's: refused too (reveal could not tell them apart)
    monkeypatch.setattr(
        ps,
        "_spell",
        lambda key, twin, stem: "bababa" if stem in ("a", "fact:light.home1_b") else real_spell(key, twin, stem),
    )
    with pytest.raises(ValueError, match=r"same pseudonym bababa"):
        Pseudonyms.derive(KEY, "home1", ["light.home1_a", "light.home1_b"])


def test_the_adapter_is_asked_exactly_what_the_tenant_client_sends() -> None:
    names = table()
    trained = names.records(HOME1)
    real = pairs(HOME1)
    fake = {(p.entity_id, p.attribute, p.template): p for p in pairs(trained)}
    assert len(real) > 1000
    for r in real:  # every fact, every template, asked under its fact name as the client sends it
        f = fake.pop((names.fact(r.entity_id), r.attribute, r.template))
        assert (
            (names.hide(r.question, facts=True), r.answer)
            == (f.question, f.answer)
            == (names.pair(r).question, r.answer)
        )
        assert names.reveal(f.question) == r.question
    # and facts the real name's domain spells out ("... switch": device class switch), which a fact name does not
    assert {(p.attribute, p.answer) for p in fake.values()} <= {("device_class", "switch")}
    assert all(is_one_way(p) for p in fake.values())
    assert all(not set(p.question.casefold().split()) & names._own_words for p in pairs(trained))
    assert not any(" light" in p.question or " lock" in p.question for p in pairs(trained))  # no domain, no kind


def test_facts_the_real_name_spells_out_are_not_taught_under_the_pseudonym() -> None:
    names = table()
    trained = {(r.entity_id, r.attribute) for r in names.records(HOME1)}
    rooms = [r for r in HOME1 if r.attribute == "room"]
    assert rooms and all((names.fact(r.entity_id), "room") not in trained for r in rooms)
    household = [r for r in HOME1 if r.entity_id == "sensor.home1_profile"]
    assert household and all((r.entity_id, r.attribute) in trained for r in household)


def test_hide_rewrites_full_and_state_line_names_in_any_case_and_reveal_turns_them_back() -> None:
    ids = ["light.home1_kitchen_ceiling", "lock.home1_hallway_front_door", "binary_sensor.home1_hallway_front_door"]
    names = Pseudonyms.derive(KEY, "home1", [*ids, "sensor.home1_kitchen_temperature"])
    lock, contact = names.table[ids[1]], names.table[ids[2]]
    assert lock.endswith("_door") and lock.partition(".")[2] == contact.partition(".")[2]  # one door, one name
    assert names.table["sensor.home1_kitchen_temperature"].endswith("_temperature")  # the kind stays readable
    light = object_name(names.table[ids[0]]).removeprefix("home1 ")  # "<word> light"
    door = lock.partition("_")[2].replace("_", " ")  # "<word> door", as state lines write it
    assert names.hide("Is the Kitchen Ceiling Light on?") == f"Is the {light} on?"
    assert names.hide("home1 kitchen ceiling light: wattage?") == f"home1 {light}: wattage?"
    assert names.hide("Is the hallway front door locked?") == f"Is the {door} locked?"
    assert names.hide("Is the ceiling lamp on?") == "Is the ceiling lamp on?"  # worded otherwise: not recognised
    assert names.unhidden("Is the ceiling lamp in the Kitchen on?") == ["ceiling", "kitchen"]  # the client says so
    assert names.named_by(["ceiling", "kitchen"]) == ["kitchen ceiling light"]  # and what to write instead
    assert names.unhidden(names.hide("Is the hallway front door locked? And the kitchen temperature?")) == []
    answer = f"No, the {door} is unlocked; home1 {light} is on."
    assert names.reveal(answer) == "No, the hallway front door is unlocked; home1 kitchen ceiling light is on."
    fact_light, fact_lock = (object_name(names.facts[i]).removeprefix("home1 ") for i in ids[:2])  # "<word> device"
    assert (
        names.hide("What's the kitchen ceiling light's wattage?", facts=True) == f"What's the {fact_light}'s wattage?"
    )
    assert names.hide("home1 hallway front door lock: auto lock?", facts=True) == f"home1 {fact_lock}: auto lock?"
    assert (
        names.hide("Is the hallway front door locked?", facts=True) == "Is the hallway front door locked?"
    )  # full names
    assert names.reveal(f"paired with home1 {fact_lock}") == "paired with home1 hallway front door lock"


def test_a_room_named_alone_goes_out_as_the_objects_asked_about_and_the_gateway_finds_them() -> None:
    names = table()
    kitchen = sorted(e for e in names.table if e.partition(".")[2].startswith("home1_kitchen"))
    words = sorted({ps._word("home1", names.table[e]) for e in kitchen})  # objects alike in own words share one
    sent = names.hide("Is anything on in the Kitchen?")  # about every object of the room
    assert (
        sent == f"Is anything on in the {', '.join(words[:-1])} and {words[-1]}?" and "kitchen" not in sent.casefold()
    )
    assert names.reveal(sent) == "Is anything on in the kitchen?" and names.unhidden(sent) == []
    # about one of them: that object's word alone, which reads back as what it stands for (the room)
    sensor = ps._word("home1", names.table["sensor.home1_kitchen_temperature"])
    assert names.hide("Is it warm in the kitchen?") == f"Is it warm in the {sensor}?"
    assert names.reveal(f"It is 21 °C in the {sensor}.") == "It is 21 °C in the kitchen."
    light = object_name(names.table["light.home1_kitchen_ceiling"]).removeprefix("home1 ")
    assert names.hide("Is the kitchen ceiling light on?") == f"Is the {light} on?"  # a full name is that object
    # a room of one object ("garden" of the garden porch light) is its word, which reads back as the object
    one = Pseudonyms.derive(KEY, "home1", ["light.home1_garden_porch", "light.home1_kitchen_ceiling"])
    porch = ps._word("home1", one.table["light.home1_garden_porch"])
    assert one.hide("Is it dark in the garden?") == f"Is it dark in the {porch}?"
    assert one.reveal(f"The {porch} is on.") == "The garden porch is on."
    # the gateway's state matching picks what it picks by the real names: the same in the room, nothing more
    # outside it (by the real names, "bedroom" also matches bedroom2's objects), for every room of 2+ objects
    every = sorted(names.table)
    real = [StoredState("home1", EntityState(e, "on"), 1, 0, "group") for e in every]
    fake = [StoredState("home1", EntityState(names.table[e], "on"), 1, 0, "group") for e in every]
    back = {fake: real for real, fake in names.table.items()}
    rooms = ("kitchen", "living room", "bedroom", "bedroom2", "bathroom", "hallway", "garage", "office")
    asked = ("Is it warm in the {}?", "Are the lights on in the {}?", "Is anything on in the {}?")
    for room, question in ((room, q.format(room)) for room in rooms for q in (*asked, "Is the {} door locked?")):
        by_name = {s.entity.entity_id for s in relevant(real, question)}
        hidden = {back[s.entity.entity_id] for s in relevant(fake, names.hide(question))}
        inside = {e for e in every if e.partition(".")[2].startswith("home1_" + room.replace(" ", "_") + "_")}
        assert hidden & inside == by_name & inside and hidden - inside <= by_name - inside, question


def test_key_and_table_files_are_the_tenant_s_and_bad_ones_are_named(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "d" / ps.KEY_FILE)
    assert key == load_or_create_key(tmp_path / "d" / ps.KEY_FILE) and len(key) == ps.KEY_BYTES
    assert stat.S_IMODE((tmp_path / "d" / ps.KEY_FILE).stat().st_mode) == 0o600
    (tmp_path / "bad.key").write_text("not hex\n")
    with pytest.raises(ConfigError, match=r"bad\.key.*64 lowercase hex"):
        load_or_create_key(tmp_path / "bad.key")

    first = for_device(tmp_path / "d", "home1", ["light.home1_kitchen", "sensor.home1_profile"])
    both = for_device(tmp_path / "d", "home1", ["switch.home1_kettle"])  # the pipeline's ids join the trainer's
    assert set(first.table) == set(first.facts) == {"light.home1_kitchen"}
    assert set(both.table) == set(both.facts) == {"light.home1_kitchen", "switch.home1_kettle"}
    saved = tmp_path / "d" / ps.TABLE_FILE
    assert Pseudonyms.load(saved) == both and stat.S_IMODE(saved.stat().st_mode) == 0o600
    saved.write_text('{"twin_id": "home1", "table": {"a": 1}, "facts": {}}')
    with pytest.raises(ConfigError, match=r"pseudonyms\.json: table"):
        Pseudonyms.load(saved)
    saved.write_text('{"twin_id": "home1", "table": {"a": "b"}, "facts": {}}')  # would ask "a" by its real name
    with pytest.raises(ConfigError, match=r"pseudonyms\.json: facts.*other objects"):
        Pseudonyms.load(saved)
    with pytest.raises(ValueError, match="fact name for exactly"):
        Pseudonyms("home1", {"a": "b"})
    # written before fact names: the client refuses it, the daemon writes it again for the same objects
    saved.write_text(json.dumps({"twin_id": "home1", "table": dict(both.table)}))
    with pytest.raises(ConfigError, match=r"pseudonyms\.json: facts.*restart the daemon"):
        Pseudonyms.load(saved)
    assert for_device(tmp_path / "d", "home1", []) == both and Pseudonyms.load(saved) == both
    saved.write_text("{")
    with pytest.raises(ConfigError, match="cannot read a pseudonym table"):
        Pseudonyms.load(saved)
