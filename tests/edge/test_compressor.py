"""The semantic compressor: deadbands, keyframes, sensitivity, coalescing, and the two targets."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping

import pytest

from edge.compressor import Compressor, CompressorSettings, Tick, Tolerances, coalesce, state_quantity
from edge.fidelity import PROMPT_OVERHEAD_BYTES, ReplayResult, reconstruct, replay, replay_changes, score
from edge.readings import StaticRecord
from shared.errors import SemanticError
from shared.scenario import Scenario, StateChange, generate, to_state_object
from shared.semantic import EntityState, Value, apply, decode_prompt, encode_prompt

TWIN = "home1"
TEMP = "sensor.home1_living_room_temperature"
POWER = "sensor.home1_utility_main_power"
ENERGY = "sensor.home1_utility_main_energy"
LIGHT = "light.home1_kitchen_ceiling"
THERMOSTAT = "climate.home1_living_room_thermostat"
DEADBANDS = {"temperature": 0.3, "brightness": 8.0, "power": 15.0, "energy": 0.05}


def es(entity_id: str, state: str | None, **attrs: Value) -> EntityState:
    return EntityState(entity_id, state, tuple(sorted(attrs.items())))


def world(*states: EntityState) -> dict[str, EntityState]:
    return {s.entity_id: s for s in states}


def compressor(keyframe_every_s: float = 3600.0, sensitive: frozenset[str] = frozenset()) -> Compressor:
    return Compressor(TWIN, DEADBANDS, keyframe_every_s, sensitive)


def body(tick: Tick | None) -> list[str]:
    """The prompt's records (without the K/D line); [] for no prompt."""
    return [] if tick is None else tick.text.split("\n")[1:]


# ------------------------------------------------------------------------------------------------
# deadbands and quantisation


def test_the_first_tick_is_a_quantised_keyframe() -> None:
    c = compressor()
    tick = c.tick(
        0,
        world(es(TEMP, "21.34"), es(POWER, "123.4"), es(ENERGY, "32074.617"), es(LIGHT, "on", brightness=1)),
    )
    assert tick is not None and tick.kind == "key" and tick.changed == 4
    assert body(tick) == [
        "L.kitchen_ceiling + b=1",
        "S.living_room_temperature 21.3",
        "S.utility_main_energy 32074.62",
        "S.utility_main_power 123",
    ]


@pytest.mark.parametrize(
    ("entity", "start", "at_band", "past_band", "sent"),
    [
        (TEMP, "20.0", "20.3", "20.31", "20.3"),
        (TEMP, "-1.0", "-1.3", "-1.31", "-1.3"),
        (POWER, "0", "15", "16", "16"),
        (ENERGY, "100.00", "100.05", "100.06", "100.06"),
    ],
)
def test_numeric_states_are_sent_only_past_the_deadband(
    entity: str, start: str, at_band: str, past_band: str, sent: str
) -> None:
    c = compressor()
    c.tick(0, world(es(entity, start)))
    assert (
        c.tick(10, world(es(entity, at_band))) is None
    )  # exactly at the deadband: the gateway is close enough
    assert body(c.tick(20, world(es(entity, past_band))))[0].endswith(" " + sent)


def test_attribute_deadbands_and_string_attributes() -> None:
    c = compressor()
    c.tick(
        0,
        world(es(LIGHT, "on", brightness=100), es(THERMOSTAT, "heat", temperature=20.0, hvac_action="idle")),
    )
    assert (
        c.tick(
            10,
            world(
                es(LIGHT, "on", brightness=108), es(THERMOSTAT, "heat", temperature=20.0, hvac_action="idle")
            ),
        )
        is None
    )
    tick = c.tick(
        20,
        world(
            es(LIGHT, "on", brightness=109), es(THERMOSTAT, "heat", temperature=20.0, hvac_action="heating")
        ),
    )
    assert body(tick) == ["C.living_room_thermostat H ha=heating", "L.kitchen_ceiling + b=109"]


def test_slow_drift_is_sent_once_it_is_a_deadband_away_from_what_was_sent() -> None:
    c = compressor()
    sent = []
    for k, value in enumerate(["20.0", "20.1", "20.2", "20.3", "20.4", "20.5", "20.6", "20.7", "20.8"]):
        tick = c.tick(10 * k, world(es(TEMP, value)))
        sent += [value] if tick is not None else []
    assert sent == ["20.0", "20.4", "20.8"]  # each step is 0.1 < 0.3, yet the gateway keeps up


def test_piggybacked_attributes_go_out_with_a_record_that_is_sent_anyway() -> None:
    c = compressor()
    c.tick(0, world(es(THERMOSTAT, "heat", temperature=20.0, current_temperature=20.0)))
    tick = c.tick(10, world(es(THERMOSTAT, "auto", temperature=20.0, current_temperature=20.1)))
    assert body(tick) == ["C.living_room_thermostat A ct=20.1"]  # 0.1 is within the band, but free here


def test_zero_is_a_value() -> None:
    c = compressor()
    first = c.tick(
        0,
        world(
            es(POWER, "0"),
            es(LIGHT, "on", brightness=0),
            es("cover.home1_blind", "closed", current_position=0),
        ),
    )
    assert body(first) == ["V.blind C pos=0", "L.kitchen_ceiling + b=0", "S.utility_main_power 0"]
    assert (
        c.tick(
            10,
            world(
                es(POWER, "0"),
                es(LIGHT, "on", brightness=0),
                es("cover.home1_blind", "closed", current_position=0),
            ),
        )
        is None
    )
    assert (
        c.tick(
            20,
            world(
                es(POWER, "-0.2"),
                es(LIGHT, "on", brightness=0),
                es("cover.home1_blind", "closed", current_position=0),
            ),
        )
        is None
    )


def test_unavailable_is_sent_once_and_recovery_sends_the_full_record() -> None:
    c = compressor()
    c.tick(0, world(es(LIGHT, "on", brightness=100)))
    assert body(c.tick(10, world(es(LIGHT, None)))) == ["L.kitchen_ceiling ~"]
    assert c.tick(20, world(es(LIGHT, None))) is None
    assert body(c.tick(30, world(es(LIGHT, "on", brightness=100)))) == ["L.kitchen_ceiling + b=100"]
    assert body(c.tick(40, {})) == ["L.kitchen_ceiling ~"]  # an entity that vanished
    assert c.tick(50, {}) is None


def test_a_cleared_attribute_is_cleared_at_the_gateway_too() -> None:
    c = compressor()
    c.tick(0, world(es(LIGHT, "on", brightness=100)))
    tick = c.tick(10, world(es(LIGHT, "off")))
    assert body(tick) == ["L.kitchen_ceiling ~", "L.kitchen_ceiling -"]  # reset, then the whole record
    assert c.gateway_state[LIGHT] == es(LIGHT, "off")


def test_sensitive_attributes_and_unencodable_entities_are_left_out() -> None:
    c = compressor(sensitive=frozenset({"door_code"}))
    tick = c.tick(
        0,
        world(
            es("sensor.home1_profile", "home", door_code="424242", occupants_home=2),
            es("weather.home", "sunny"),
        ),
    )
    assert body(tick) == ["S.profile h occupants_home=2"]
    assert c.unencodable == {"weather.home"}
    assert c.tick(10, world(es("sensor.home1_profile", "home", door_code="999999", occupants_home=2))) is None


def test_quantity_comes_from_device_class_or_the_id_suffix() -> None:
    assert state_quantity(es("sensor.home1_garage_ev_charger_power", "1")) == "power"
    assert state_quantity(es("sensor.home1_x", "1", device_class="humidity")) == "humidity"
    assert state_quantity(es("sensor.home1_x", "1")) is None
    assert state_quantity(es("sensor.home1_temperature", "warm")) is None
    assert state_quantity(es("climate.home1_temperature", "21")) is None


def test_quantum_is_capped_by_the_deadband_and_settings_are_checked() -> None:
    tol = Tolerances.build({"temperature": 0.02}, {"temperature": 0.5})
    assert tol.step("temperature") == 0.04 and tol.quantise("temperature", 21.31) == pytest.approx(21.32)
    assert Tolerances.build({"power": 0.0}, None).quantise("power", 12.34) == 12.34  # deadband 0: exact
    with pytest.raises(ValueError):
        Tolerances.build({"power": -1.0}, None)
    with pytest.raises(ValueError):
        Compressor(TWIN, {}, 0.0, set())


# ------------------------------------------------------------------------------------------------
# keyframes


def test_keyframes_come_periodically_and_on_request() -> None:
    c = compressor(keyframe_every_s=60)
    kinds = {}
    for k in range(15):
        now = 10.0 * k
        if now == 80:
            c.request_keyframe()
        tick = c.tick(now, world(es(POWER, str(100 * k))))
        kinds[now] = None if tick is None else tick.kind
    assert [t for t, kind in kinds.items() if kind == "key"] == [0, 60, 80, 140]  # restarted at 80
    assert all(kind == "delta" for t, kind in kinds.items() if t not in (0, 60, 80, 140))


def test_gateway_state_is_what_the_prompts_rebuild_and_output_is_deterministic() -> None:
    rng = random.Random(3)
    texts_a: list[str] = []
    texts_b: list[str] = []
    a, b = compressor(keyframe_every_s=300), compressor(keyframe_every_s=300)
    for k in range(200):
        states = [es(f"sensor.home1_room{i}_temperature", f"{20 + rng.gauss(0, 1):.1f}") for i in range(5)]
        states.append(
            es(
                LIGHT,
                rng.choice(["on", "off"]),
                **({"brightness": rng.randrange(256)} if rng.random() < 0.5 else {}),
            )
        )
        ta = a.tick(10.0 * k, world(*states))
        tb = b.tick(10.0 * k, world(*reversed(states)))  # another insertion order, same state
        texts_a += [ta.text] if ta else []
        texts_b += [tb.text] if tb else []
    assert texts_a == texts_b
    assert reconstruct(texts_a, TWIN) == dict(a.gateway_state)


# ------------------------------------------------------------------------------------------------
# coalescing


def _deltas(rng: random.Random, n: int) -> list[str]:
    ids = [LIGHT, TEMP, THERMOSTAT]
    out = []
    for _ in range(n):
        records = []
        for entity in rng.sample(ids, rng.randint(1, 3)):
            if rng.random() < 0.2:
                records.append(EntityState(entity, None))
            elif entity == TEMP:
                records.append(es(TEMP, f"{rng.randint(150, 250) / 10}"))
            else:
                attrs = {
                    name: rng.randint(0, 9)
                    for name in rng.sample(["brightness", "temperature", "x"], rng.randint(0, 2))
                }
                records.append(es(entity, rng.choice(["on", "off", "heat"]), **attrs))
        out.append(encode_prompt("D", records, TWIN))
    return out


def _apply_all(base: Mapping[str, EntityState], texts: list[str]) -> dict[str, EntityState]:
    state = dict(base)
    for text in texts:
        state = apply(state, decode_prompt(text, TWIN))
    return state


def test_coalesced_deltas_do_what_the_deltas_did_to_any_prior_state() -> None:
    rng = random.Random(11)
    base = world(es(LIGHT, "on", brightness=5, x=1), es(TEMP, "20.0"), es(THERMOSTAT, "heat", temperature=3))
    for _ in range(300):
        texts = _deltas(rng, rng.randint(1, 6))
        merged = coalesce(texts, TWIN)
        assert merged.startswith("D\n")
        assert _apply_all(base, [merged]) == _apply_all(base, texts)
        assert _apply_all({}, [merged]) == _apply_all({}, texts)


def test_coalescing_keeps_a_reset_so_a_lost_attribute_stays_lost() -> None:
    texts = [
        "D\nL.kitchen_ceiling + b=100",
        "D\nL.kitchen_ceiling ~\nL.kitchen_ceiling -",
        "D\nL.kitchen_ceiling + b=7",
    ]
    assert coalesce(texts, TWIN) == "D\nL.kitchen_ceiling ~\nL.kitchen_ceiling + b=7"


def test_coalescing_across_a_keyframe_gives_a_keyframe() -> None:
    texts = [
        "D\nS.utility_main_power 5",
        "K\nL.kitchen_ceiling + b=100\nS.utility_main_power 7",
        "D\nL.kitchen_ceiling -",
    ]
    merged = coalesce(texts, TWIN)
    assert merged == "K\nL.kitchen_ceiling - b=100\nS.utility_main_power 7"  # a delta merges, as apply does
    assert decode_prompt(merged, TWIN).kind == "K"
    with pytest.raises(SemanticError):
        coalesce([], TWIN)
    with pytest.raises(SemanticError):
        coalesce(["X\nnot a prompt"], TWIN)


# ------------------------------------------------------------------------------------------------
# the scenario: privacy and the targets


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return generate(7, homes=3)


def _leaky(scenario: Scenario, home: int) -> tuple[list[StateChange], list[StaticRecord]]:
    """The home's trace, where every entity's first state also carries all its static facts (the
    sensitive ones too), as a careless integration would publish them."""
    h = scenario.homes[home]
    ids = {e.entity_id for e in h.entities}
    facts = [StaticRecord(f.entity_id, f.attribute, f.value, f.sensitive) for f in h.static_facts()]
    by_entity: dict[str, dict[str, object]] = {}
    for f in facts:
        by_entity.setdefault(f.entity_id, {})[f.attribute] = f.value
    changes = []
    for c in scenario.trace:
        if c.entity_id in ids:
            extra = by_entity.pop(c.entity_id, {})
            changes.append(StateChange(c.ts_s, c.entity_id, c.state, {**extra, **c.attributes}))  # type: ignore[dict-item]
    return changes, facts


def test_sensitive_values_never_appear_in_any_prompt(scenario: Scenario) -> None:
    secrets = scenario.sensitive_values()
    assert len(secrets) == 15
    for home in range(3):
        changes, facts = _leaky(scenario, home)
        fed = repr([c.attributes for c in changes[:200]])
        assert any(secret in fed for secret in secrets)  # the leak is really offered
        result = replay_changes(
            changes,
            scenario.homes[home].home_id,
            facts,
            CompressorSettings(),
            60.0,
            scenario.duration_s,
            start_iso=scenario.start_iso,
        )
        text = "\n".join(p.text for p in result.prompts)
        assert "occupants_home" in text  # public dynamic attributes of the same entity do go out
        for secret in secrets:
            for form in (secret, secret.replace(" ", "%20"), secret.replace(", ", ",%20")):
                assert form not in text, f"{form!r} leaked"


@pytest.fixture(scope="module")
def day_at_10s(scenario: Scenario) -> list[ReplayResult]:
    return [replay(scenario, home, CompressorSettings(), 10.0) for home in range(3)]


def test_fidelity_target_at_every_tick(day_at_10s: list[ReplayResult]) -> None:
    for r in day_at_10s:
        assert r.ticks == 8640 and r.keyframes == 24
        assert r.fidelity.fraction >= 0.99, r.twin_id
        assert r.fidelity_stale.fraction >= 0.99, r.twin_id  # even just before the next tick


def test_bandwidth_target_against_full_json_every_tick(day_at_10s: list[ReplayResult]) -> None:
    for r in day_at_10s:
        assert r.ratio(PROMPT_OVERHEAD_BYTES) >= 200, (r.twin_id, r.ratio())
        assert r.wire_bytes() < 1_000_000  # a day of one home, framing included


def test_the_baseline_is_the_json_of_every_state_object(scenario: Scenario) -> None:
    first = [
        c
        for c in scenario.initial_states().values()
        if c.entity_id.startswith(("light.home1_", "sensor.home1_"))
    ]
    result = replay_changes(first, TWIN, [], CompressorSettings(), 10.0, 20.0, start_iso=scenario.start_iso)
    objects = [to_state_object(c, scenario.start_iso) for c in first]
    assert result.ticks == 2
    assert result.baseline_bytes == 2 * len(json.dumps(objects, ensure_ascii=False).encode())


def test_fidelity_notices_a_bad_reconstruction() -> None:
    tol = Tolerances.build(DEADBANDS, None)
    truth = world(es(TEMP, "20.0"), es(LIGHT, "off"))
    assert score(world(es(TEMP, "20.3"), es(LIGHT, "off")), truth, tol).fraction == 1.0
    assert score(world(es(TEMP, "20.4"), es(LIGHT, "off")), truth, tol).fraction == 0.5
    stale = score(world(es(TEMP, "20.0"), es(LIGHT, "off", brightness=9)), truth, tol)
    assert (stale.matched, stale.total) == (2, 3)  # a stale attribute counts against it
    ghost = score(world(es(TEMP, "20.0"), es(LIGHT, "off"), es(POWER, "1")), truth, tol)
    assert (ghost.matched, ghost.total) == (2, 3)
