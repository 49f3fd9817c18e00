"""The semantic prompt format: compact, lossless for what it carries, parseable by the gateway."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import SemanticError
from shared.semantic import (
    ATTR_CODES,
    DOMAIN_CODES,
    EntityState,
    Prompt,
    apply,
    decode_prompt,
    encode_prompt,
    render,
)

LIGHT = EntityState("light.home1_kitchen_ceiling", "on", (("brightness", 115),))
TEMP = EntityState("sensor.home1_living_room_temperature", "21.3")
TV = EntityState("media_player.home1_living_room_tv", "playing", (("source", "Radio One = 100%"),))
FOREIGN = EntityState("light.porch_lamp", "off")


def test_encoding_is_compact_and_round_trips() -> None:
    text = encode_prompt("K", [LIGHT, TEMP, TV, FOREIGN], "home1")
    assert text.splitlines()[:3] == ["K", "L.kitchen_ceiling + b=115", "S.living_room_temperature 21.3"]
    assert "L!porch_lamp -" in text
    prompt = decode_prompt(text, "home1")
    assert prompt == Prompt("K", (LIGHT, TEMP, TV, FOREIGN))


def test_unavailable_entities() -> None:
    gone = EntityState("binary_sensor.home1_hallway_motion", None)
    assert decode_prompt(encode_prompt("D", [gone], "home1"), "home1").states == (gone,)


def test_codes_are_unique() -> None:
    for table in (DOMAIN_CODES, ATTR_CODES):
        assert len(set(table.values())) == len(table)


values = st.one_of(
    st.integers(-(10**9), 10**9),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda x: float(f"{x:.6g}")),
    st.text(min_size=1, max_size=12),
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(DOMAIN_CODES)),
            st.from_regex(r"[a-z0-9_]{1,20}", fullmatch=True),
            st.one_of(st.none(), st.text(min_size=1, max_size=10)),
            st.dictionaries(st.from_regex(r"[a-z_]{1,10}", fullmatch=True), values, max_size=3),
        ),
        max_size=5,
    )
)
def test_any_state_round_trips(records: list[tuple[str, str, str | None, dict[str, object]]]) -> None:
    states = tuple(
        EntityState(f"{d}.{o}", s, tuple(a.items()) if s is not None else ())  # type: ignore[arg-type]
        for d, o, s, a in records
    )
    decoded = decode_prompt(encode_prompt("D", states, "home1"), "home1").states
    for before, after in zip(states, decoded, strict=True):
        assert after.entity_id == before.entity_id and after.state == before.state
        for (name, value), (name2, value2) in zip(before.attributes, after.attributes, strict=True):
            assert name == name2
            assert value2 == value


def test_apply_keyframe_then_delta() -> None:
    state = apply({}, Prompt("K", (LIGHT, TEMP)))
    state = apply(state, Prompt("D", (EntityState(LIGHT.entity_id, "on", (("color_temp", 300),)),)))
    assert state[LIGHT.entity_id].attrs() == {"brightness": 115, "color_temp": 300}
    state = apply(state, Prompt("K", (TEMP,)))
    assert set(state) == {TEMP.entity_id}


def test_render_is_readable() -> None:
    text = render([LIGHT, TEMP, TV], "home1")
    assert "kitchen ceiling (light): on, brightness 45%" in text
    assert "living room tv (media player): playing, source Radio One = 100%" in text


@pytest.mark.parametrize(
    ("text", "line"),
    [("X\nL.a +", "line 1"), ("D\nL.a", "line 2"), ("D\nQ.a +", "line 2"), ("D\nL.a + b", "line 2")],
)
def test_bad_prompts_name_the_line(text: str, line: str) -> None:
    with pytest.raises(SemanticError, match=line):
        decode_prompt(text, "home1")


def test_bad_entity_ids_are_refused() -> None:
    with pytest.raises(SemanticError):
        encode_prompt("D", [EntityState("weird.home1_x", "on")], "home1")


def test_merge_deltas_equals_applying_them() -> None:
    from shared.semantic import merge_deltas

    d1 = encode_prompt("D", [LIGHT, TEMP], "home1")
    d2 = encode_prompt(
        "D",
        [EntityState(LIGHT.entity_id, "on", (("brightness", 20),)), EntityState(TEMP.entity_id, None)],
        "home1",
    )
    merged = decode_prompt(merge_deltas([d1, d2], "home1"), "home1")
    direct = apply(apply({}, decode_prompt(d1, "home1")), decode_prompt(d2, "home1"))
    assert {s.entity_id: s for s in merged.states} == direct
    with pytest.raises(SemanticError):
        merge_deltas([encode_prompt("K", [LIGHT], "home1")], "home1")
