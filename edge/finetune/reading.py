"""State-reading examples: the twin keeps answering from the state the gateway gives it.

A twin query's prompt is the home's current state, narrowed to what the question is about, and the
question (``gateway.queries.twin_prompt``). An adapter fine-tuned on nothing but terse static answers
("Shelly", "2023") forgets to read that state: measured on the demo's adapters of session 10, the base
model answered "Is the front door locked?" with "The front door is currently locked." and the adapter
with "201801010010". So every round's train split also carries questions about *drawn* states of the
device's own entities, in the gateway's exact prompt form, answered from the state lines:

    prompt  You are the digital twin of the home 'home1'. Current state:
            hallway front door (lock): unlocked
            Question: Is the hallway front door locked?
    answer  No, the hallway front door is unlocked.

The states are drawn at random (lights on or off, any brightness, any temperature ...), so nothing
about the home's real state is trained on and the only way to the answer is to read it. A few
distractor lines from other entities ride along, as a vaguer question gets them from the gateway.
Inter-twin questions that ask for an aggregate (average brightness over the circle ...) are trained
to answer with the gateway's ``Computed:`` line (``gateway.queries.inter_prompt``).

Train and check wordings are disjoint: :func:`readings` with ``split="heldout"`` gives the questions a
round scores its adapter on (``state_accuracy``), on states drawn with another seed.

Entities come from the static records (their ids); the household pseudo-entity is never asked about.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.prompts import StoredState
from gateway.queries import aggregates, inter_prompt, relevant, twin_prompt
from shared.semantic import EntityState, object_prefix
from shared.templates import HOUSEHOLD_SUFFIX, QAPair, Split

TEMPLATE_PREFIX = "state."  # QAPair.template of every reading
ATTRIBUTE = "@state"  # QAPair.attribute of every reading (never a static attribute: those have no "@")
MAX_DISTRACTORS = 3
_SOURCES = ("Spotify", "Netflix", "radio", "TV", "YouTube", "AirPlay")
_UNITS = {"temperature": "°C", "humidity": "%", "illuminance": " lx", "power": " W", "energy": " kWh"}


@dataclass(frozen=True, slots=True)
class Expect:
    """What a right answer says, however it is worded (the base model words it its own way): an answer
    that opens with yes/no must open with ``yes`` (when set); any other must match every pattern of
    ``says`` and none of ``not_says``."""

    yes: bool | None
    says: tuple[str, ...]
    not_says: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Reading:
    """A question about drawn states and its answer: ``prompt`` is the user turn the gateway would build."""

    pair: QAPair
    prompt: str
    expect: Expect


def is_reading(pair: QAPair) -> bool:
    return pair.template.startswith(TEMPLATE_PREFIX)


def answers(text: str, expect: Expect) -> bool:
    """Whether ``text`` gives the state the question asked about (see :class:`Expect`)."""
    said = text.strip().lower()
    opener = re.match(r"(yes|no)\b", said)
    if opener and expect.yes is not None:  # "No, it has not been turned on." says "on" and means off
        return (opener[1] == "yes") == expect.yes
    if any(re.search(p, said) for p in expect.not_says):
        return False
    return bool(expect.says) and all(re.search(p, said) for p in expect.says)


def word(text: str) -> str:
    """A pattern for ``text`` as a whole word or number ("locked" not in "unlocked", "20" not in "20.5")."""
    return rf"(?<![\w.-]){re.escape(text.lower())}(?![\w]|\.\d)"


def _state(yes: bool, true: str, false: str) -> Expect:
    """A two-state answer: says ``true`` when ``yes``, else ``false``, and never the other."""
    said, other = (true, false) if yes else (false, true)
    return Expect(yes, (word(said),), (word(other),))


# ------------------------------------------------------------------------------------------------
# drawn states


@dataclass(frozen=True, slots=True)
class _Entity:
    entity_id: str
    domain: str
    name: str  # as the context renders it: "kitchen ceiling"
    room: str


def entities(entity_ids: Iterable[str], twin_id: str) -> list[_Entity]:
    """The askable entities among ``entity_ids`` (sorted, the household pseudo-entity left out)."""
    prefix = object_prefix(twin_id)
    named = []
    for entity_id in sorted(set(entity_ids)):
        domain, _, obj = entity_id.partition(".")
        if not obj.startswith(prefix) or obj.endswith(HOUSEHOLD_SUFFIX) or domain not in _DRAW:
            continue
        named.append((entity_id, domain, obj.removeprefix(prefix).replace("_", " ")))
    rooms = _rooms([name for _, _, name in named])
    return [_Entity(e, d, n, rooms[n]) for e, d, n in named]


def _rooms(names: Sequence[str]) -> dict[str, str]:
    """Each name's room: its longest leading words that at least 3 names share (else its first word)."""
    counts = Counter(" ".join(n.split()[:k]) for n in names for k in range(1, len(n.split())))
    out = {}
    for name in names:
        words = name.split()
        lead = [" ".join(words[:k]) for k in range(1, len(words)) if counts[" ".join(words[:k])] >= 3]
        out[name] = lead[-1] if lead else words[0]
    return out


def _quantity(e: _Entity) -> str | None:
    return next((q for q in _UNITS if e.entity_id.endswith(q)), None)


def _light(rng: random.Random, _e: _Entity) -> EntityState | None:
    if rng.random() < 0.5:
        return None
    return EntityState("", "on", (("brightness", rng.randrange(3, 256)),))


def _sensor(rng: random.Random, e: _Entity) -> EntityState | None:
    value = {
        "temperature": lambda: f"{rng.uniform(-5.0, 30.0):.1f}",
        "humidity": lambda: str(rng.randrange(25, 80)),
        "illuminance": lambda: str(rng.choice((0, rng.randrange(1, 40000)))),
        "power": lambda: str(rng.choice((0, rng.randrange(1, 3500)))),
        "energy": lambda: f"{rng.uniform(10, 40000):.2f}",
    }.get(_quantity(e) or "")
    return EntityState("", value() if value else None)


def _climate(rng: random.Random, _e: _Entity) -> EntityState | None:
    mode = rng.choice(("heat", "off"))
    current, target = round(rng.uniform(14.0, 25.0), 1), rng.randrange(32, 48) / 2
    action = "off" if mode == "off" else ("heating" if current < target else "idle")
    return EntityState("", mode, (("current_temperature", current), ("hvac_action", action), ("temperature", target)))


def _cover(rng: random.Random, _e: _Entity) -> EntityState | None:
    position = rng.choice((0, 0, 100, rng.randrange(5, 100, 5)))
    return EntityState("", "open" if position else "closed", (("current_position", position),))


def _media(rng: random.Random, _e: _Entity) -> EntityState | None:
    state = rng.choice(("off", "idle", "playing", "paused"))
    if state in ("playing", "paused"):
        return EntityState("", state, (("volume_level", round(rng.random(), 2)), ("source", rng.choice(_SOURCES))))
    return EntityState("", state)


def _two(on: str, off: str) -> Callable[[random.Random, _Entity], EntityState | None]:
    return lambda rng, _e: EntityState("", rng.choice((on, off)))


# how each domain's state is drawn (None: a light that is off, with no attributes)
_DRAW: dict[str, Callable[[random.Random, _Entity], EntityState | None]] = {
    "light": _light,
    "switch": _two("on", "off"),
    "binary_sensor": _two("on", "off"),
    "lock": _two("locked", "unlocked"),
    "cover": _cover,
    "media_player": _media,
    "climate": _climate,
    "sensor": _sensor,
}


def draw_home(rng: random.Random, home: Sequence[_Entity]) -> dict[str, EntityState]:
    """One random state of every entity of ``home``."""
    out = {}
    for e in home:
        drawn = _DRAW[e.domain](rng, e) or EntityState("", "off")
        out[e.entity_id] = EntityState(e.entity_id, drawn.state, drawn.attributes)
    return out


# ------------------------------------------------------------------------------------------------
# questions: (train wordings, held-out wordings) and the answer, per kind of entity


@dataclass(frozen=True, slots=True)
class _Ask:
    name: str
    applies: Callable[[_Entity], bool]
    train: tuple[str, ...]
    heldout: tuple[str, ...]
    answer: Callable[[_Entity, EntityState], str]
    expect: Callable[[_Entity, EntityState], Expect]


def _yes_no(yes: bool, text_yes: str, text_no: str) -> str:
    return f"Yes, {text_yes}." if yes else f"No, {text_no}."


def _light_noun(e: _Entity) -> str:
    return e.name if e.name.split()[-1] in ("light", "lamp", "lights", "backlight") else f"{e.name} light"


def _opening(e: _Entity) -> bool:
    return e.domain == "binary_sensor" and e.name.split()[-1] in ("door", "window", "gate")


def _light_answer(e: _Entity, s: EntityState) -> str:
    b = s.attrs().get("brightness")
    pct = f" at {round(b * 100 / 255)}% brightness" if isinstance(b, int) else ""
    return _yes_no(s.state == "on", f"the {_light_noun(e)} is on{pct}", f"the {_light_noun(e)} is off")


def _sensor_answer(e: _Entity, s: EntityState) -> str:
    return f"The {e.name} is {s.state}{_UNITS[_quantity(e) or '']}."


def _setting(s: EntityState) -> str:
    return f"{s.attrs()['temperature']:g}°C"


def _reads(s: EntityState) -> str:
    return f"{s.attrs()['current_temperature']:g}°C"


def _media_expect(_e: _Entity, s: EntityState) -> Expect:
    if s.state == "playing":
        return Expect(True, (word("playing"),), (r"not playing", word("paused"), word("off"), word("idle")))
    return Expect(False, (word(s.state or ""),), (r"is playing",))


def _media_answer(e: _Entity, s: EntityState) -> str:
    source = s.attrs().get("source")
    return _yes_no(s.state == "playing", f"the {e.name} is playing {source}", f"the {e.name} is {s.state}")


_ASKS = (
    _Ask(
        "light",
        lambda e: e.domain == "light",
        ("Is the {light} on?", "Is the {light} switched on?", "Is the {light} on right now?"),
        ("Tell me whether the {light} is on.", "Has the {light} been turned on?"),
        _light_answer,
        lambda _e, s: _state(s.state == "on", "on", "off"),
    ),
    _Ask(
        "switch",
        lambda e: e.domain == "switch",
        ("Is the {name} on?", "Is the {name} switched on?"),
        ("Tell me whether the {name} is on.",),
        lambda e, s: _yes_no(s.state == "on", f"the {e.name} is on", f"the {e.name} is off"),
        lambda _e, s: _state(s.state == "on", "on", "off"),
    ),
    _Ask(
        "lock",
        lambda e: e.domain == "lock",
        ("Is the {name} locked?", "Is the {name} lock locked?"),
        ("Tell me whether the {name} is locked.", "Did someone lock the {name}?"),
        lambda e, s: _yes_no(s.state == "locked", f"the {e.name} is locked", f"the {e.name} is unlocked"),
        lambda _e, s: _state(s.state == "locked", "locked", "unlocked"),
    ),
    _Ask(
        "opening",
        _opening,
        ("Is the {name} open?", "Is the {name} open right now?"),
        ("Tell me whether the {name} is open.",),
        lambda e, s: _yes_no(s.state == "on", f"the {e.name} is open", f"the {e.name} is closed"),
        lambda _e, s: _state(s.state == "on", "open", "closed"),
    ),
    _Ask(
        "motion",
        lambda e: e.domain == "binary_sensor" and e.name.endswith("motion"),
        ("Is there motion in the {room}?", "Does the {name} sensor see anyone?"),
        ("Is anyone moving in the {room}?",),
        lambda e, s: _yes_no(
            s.state == "on", f"the {e.name} sensor detects motion", f"the {e.name} sensor detects no motion"
        ),
        lambda _e, s: Expect(s.state == "on", ()),
    ),
    _Ask(
        "binary",
        lambda e: e.domain == "binary_sensor",
        ("Is the {name} sensor on?", "Is the {name} sensor triggered?"),
        ("Tell me whether the {name} sensor is on.",),
        lambda e, s: _yes_no(s.state == "on", f"the {e.name} sensor is on", f"the {e.name} sensor is off"),
        lambda _e, s: _state(s.state == "on", "on", "off"),
    ),
    _Ask(
        "cover",
        lambda e: e.domain == "cover",
        ("Is the {name} open?", "Is the {name} up?"),
        ("Tell me whether the {name} is open.",),
        lambda e, s: _yes_no(
            s.state == "open",
            f"the {e.name} is open at {s.attrs().get('current_position')}%",
            f"the {e.name} is closed",
        ),
        lambda _e, s: _state(s.state == "open", "open", "closed"),
    ),
    _Ask(
        "media",
        lambda e: e.domain == "media_player",
        ("Is the {name} playing?", "Is anything playing on the {name}?"),
        ("Tell me whether the {name} is playing.",),
        _media_answer,
        _media_expect,
    ),
    _Ask(
        "climate_setting",
        lambda e: e.domain == "climate",
        ("What is the {name} set to?", "What temperature is the {name} set to?"),
        ("Tell me the {name} setting.",),
        lambda e, s: f"The {e.name} is set to {_setting(s)} ({s.state}).",
        lambda _e, s: Expect(None, (word(_setting(s).removesuffix("°C")),)),
    ),
    _Ask(
        "climate_reading",
        lambda e: e.domain == "climate",
        ("What does the {name} read?", "What temperature does the {name} measure?"),
        ("Tell me the temperature at the {name}.",),
        lambda e, s: f"The {e.name} reads {_reads(s)}.",
        lambda _e, s: Expect(None, (word(_reads(s).removesuffix("°C")),)),
    ),
    _Ask(
        "sensor",
        lambda e: e.domain == "sensor" and _quantity(e) is not None,
        ("What is the {name}?", "What is the {name} right now?", "What does the {name} sensor say?"),
        ("Tell me the {name}.", "What's the current {name}?"),
        _sensor_answer,
        lambda _e, s: Expect(None, (word(s.state or ""),)),
    ),
)


def _room_lights(room: str, lights: Sequence[tuple[_Entity, EntityState]]) -> str:
    on = [_light_noun(e) for e, s in lights if s.state == "on"]
    if not on:
        return f"No lights are on in the {room}."
    return f"The {' and the '.join(on)} {'is' if len(on) == 1 else 'are'} on."


_ROOM_LIGHTS = (
    ("Which lights are on in the {room}?", "What lights are on in the {room}?"),
    ("List the lights on in the {room}.",),
)
_AGGREGATES = (
    ("What is the average light brightness in our group?", "average"),
    ("What is the average temperature in our group?", "average"),
    ("What is the highest temperature in our group?", "max"),
    ("How many lights are on in our group?", "count"),
)
_AGGREGATES_HELDOUT = (
    ("Across our circle, what is the mean brightness of the lights?", "average"),
    ("What is the lowest temperature in our group?", "min"),
)


# ------------------------------------------------------------------------------------------------
# readings


def readings(entity_ids: Iterable[str], twin_id: str, n: int, split: Split, seed: int) -> list[Reading]:
    """``n`` distinct readings (fewer when the home has too little to ask about) over states drawn from ``seed``."""
    home = entities(entity_ids, twin_id)
    if not home or n <= 0:
        return []
    rng = random.Random(f"reading/{twin_id}/{split}/{seed}")
    out: dict[tuple[str, str], Reading] = {}  # no example twice (a small home draws repeats)
    for _ in range(n * 4):  # a maker may find nothing to ask, or a repeat: draw again
        if len(out) == n:
            break
        maker = rng.choices(_MAKERS, _MAKER_WEIGHTS)[0]
        made = maker(rng, home, twin_id, split)
        if made is not None:
            out.setdefault((made.prompt, made.pair.answer), made)
    return list(out.values())


def _wording(rng: random.Random, train: Sequence[str], heldout: Sequence[str], split: Split) -> str:
    return rng.choice(train if split == "train" else heldout)


def _pair(e_id: str, question: str, answer: str, template: str, split: Split) -> QAPair:
    return QAPair(e_id, ATTRIBUTE, question, answer, f"{TEMPLATE_PREFIX}{template}", split, False)


def _with_distractors(rng: random.Random, chosen: Sequence[str], state: dict[str, EntityState]) -> list[EntityState]:
    others = [k for k in state if k not in chosen]
    extra = rng.sample(others, min(len(others), rng.randrange(MAX_DISTRACTORS + 1)))
    return [state[k] for k in (*chosen, *extra)]


def _entity_reading(rng: random.Random, home: Sequence[_Entity], twin_id: str, split: Split) -> Reading | None:
    e = rng.choice(home)
    asks = [a for a in _ASKS if a.applies(e)]
    if not asks:
        return None
    ask = rng.choice(asks)
    state = draw_home(rng, home)
    question = _wording(rng, ask.train, ask.heldout, split).format(name=e.name, room=e.room, light=_light_noun(e))
    shown = [s.entity.entity_id for s in relevant(_stored(twin_id, state.values()), question)]
    if e.entity_id not in shown:  # the gateway would not show it: a vaguer wording; show it anyway
        shown.append(e.entity_id)
    prompt = twin_prompt(twin_id, question, _with_distractors(rng, shown, state))
    drawn = state[e.entity_id]
    return Reading(_pair(e.entity_id, question, ask.answer(e, drawn), ask.name, split), prompt, ask.expect(e, drawn))


def _room_reading(rng: random.Random, home: Sequence[_Entity], twin_id: str, split: Split) -> Reading | None:
    rooms = sorted({e.room for e in home if e.domain == "light"})
    if not rooms:
        return None
    room = rng.choice(rooms)
    state = draw_home(rng, home)
    question = _wording(rng, *_ROOM_LIGHTS, split).format(room=room)
    lights = [(e, state[e.entity_id]) for e in home if e.domain == "light" and e.room == room]
    shown = [s.entity.entity_id for s in relevant(_stored(twin_id, state.values()), question)]
    shown += [e.entity_id for e, _ in lights if e.entity_id not in shown]
    prompt = twin_prompt(twin_id, question, [state[k] for k in shown])
    on = [e.name for e, s in lights if s.state == "on"]
    off = [e.name for e, s in lights if s.state != "on"]
    expect = Expect(None, tuple(word(n) for n in on) or (r"\b(no|none)\b",), tuple(word(n) for n in off))
    pair = _pair(f"light.{room}", question, _room_lights(room, lights), "room_lights", split)
    return Reading(pair, prompt, expect)


def _aggregate_reading(rng: random.Random, home: Sequence[_Entity], twin_id: str, split: Split) -> Reading | None:
    question, op = rng.choice(_AGGREGATES if split == "train" else _AGGREGATES_HELDOUT)
    others = [f"{twin_id}x1"]  # a circle with one more home, shaped like this one (a longer prompt costs more)
    own = _stored(twin_id, draw_home(rng, home).values())
    shared = [s for other in others for s in _stored(other, _renamed(draw_home(rng, home), twin_id, other).values())]
    aggs = aggregates(question, own + shared)
    if not aggs:
        return None
    mine = relevant(own, question, 12)
    theirs = relevant(shared, question, 24)
    a = aggs[0]
    answer = f"The {a.name} is {a.value:g}{a.unit} over {a.n} entities."
    if op == "count":
        answer = f"{a.value:g} lights are on in the circle."
    prompt = inter_prompt(twin_id, question, mine, theirs, aggs)
    expect = Expect(None, (word(f"{a.value:g}"),))
    return Reading(_pair(f"@circle.{op}", question, answer, f"aggregate_{op}", split), prompt, expect)


def _stored(twin_id: str, states: Iterable[EntityState]) -> list[StoredState]:
    return [StoredState(twin_id, s, 0, 0, "group") for s in states]


def _renamed(state: dict[str, EntityState], twin_id: str, other: str) -> dict[str, EntityState]:
    old, new = object_prefix(twin_id), object_prefix(other)
    out = {}
    for entity_id, s in state.items():
        domain, _, obj = entity_id.partition(".")
        renamed = f"{domain}.{new}{obj.removeprefix(old)}"
        out[renamed] = EntityState(renamed, s.state, s.attributes)
    return out


# entity questions mostly; aggregates' prompts are the longest (a circle's lines), so they come rarely
_MAKERS = (_entity_reading, _room_reading, _aggregate_reading)
_MAKER_WEIGHTS = (0.7, 0.2, 0.1)
