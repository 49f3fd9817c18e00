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
about the home's real state is trained on and the only way to the answer is to read it. The lines are
the ones the gateway would pick for the question (``gateway.queries.relevant``) and up to three more:
a person's wording does not always narrow the state to one line ("the front door" is a lock and a
contact sensor), and the answer must come from the line asked about. Inter-twin questions that ask for
an aggregate (average brightness over the circle ...) are trained to answer with the gateway's
``Computed:`` line (``gateway.queries.inter_prompt``), over a shorter circle than the gateway may send.

Train and check wordings are disjoint: :func:`readings` with ``split="heldout"`` gives the questions a
round scores its adapter on (``state_accuracy``), on states drawn from a random stream of their own.
:func:`answers` judges an answer by what it says, not its wording, so the base model is scored on the
same questions (``state_accuracy_base``); :func:`floor` is what one constant yes/no answer scores.

Entities come from the static records (their ids, with or without the twin's prefix); the household
pseudo-entity is never asked about, and no static value is ever shown or asked.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.prompts import StoredState
from gateway.queries import aggregates, inter_prompt, relevant, twin_prompt
from shared.semantic import EntityState, format_value, object_prefix
from shared.templates import HOUSEHOLD_SUFFIX, QAPair, Split, rooms

TEMPLATE_PREFIX = "state."  # QAPair.template of every reading
ATTRIBUTE = "@state"  # QAPair.attribute of every reading (never a static attribute: those have no "@")
MAX_DISTRACTORS = 3
# terms that say there is motion, or none ("motion" alone is in the sensor's own name: "hallway motion")
_MOTION = "detects motion|motion detected|there is motion|is moving|someone|somebody|occupied|on"
_NO_MOTION = "no motion|no one|nobody|nothing|off"
_SOURCES = ("Spotify", "Netflix", "radio", "TV", "YouTube", "AirPlay")
_UNITS = {"temperature": "°C", "humidity": "%", "illuminance": " lx", "power": " W", "energy": " kWh"}


@dataclass(frozen=True, slots=True)
class Expect:
    """What a right answer says, however it is worded (the base model words it its own way).

    ``yes``: the answer to a yes/no question; an answer that opens with the other one is wrong.
    ``says``: terms a right answer affirms (all of them); ``not_says``: terms it must not affirm. A term
    is a word, number or name, with ``|`` between alternatives; "not on" / "isn't locked" deny the term
    instead of affirming it, and denying every ``not_says`` term counts as affirming ``says`` ("the light
    is not on" says it is off).
    """

    yes: bool | None
    says: tuple[str, ...]
    not_says: tuple[str, ...] = ()
    lights: tuple[tuple[str, bool], ...] = ()  # a room's lights, (name, on): judged clause by clause instead


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
    said = " ".join(text.lower().replace("’", "'").split())
    opener = re.match(r"(yes|no)\b[\s,.!]*", said)
    if opener and expect.yes is not None and (opener[1] == "yes") != expect.yes:
        return False
    if opener and expect.yes is not None:  # "No it's off": the opener is no negation of what follows
        said = said[opener.end() :]
    if expect.lights:
        return _room_answer(said, expect.lights)
    if any(_uses(said, term, negated=False) for term in expect.not_says):
        return False  # "No, the front door is locked." when it is unlocked
    if any(_uses(said, term, negated=True) for term in expect.says):
        return False
    if opener and expect.yes is not None:
        return True
    if expect.says and all(_uses(said, term, negated=False) for term in expect.says):
        return True
    return bool(expect.not_says) and all(_uses(said, term, negated=True) for term in expect.not_says)


# a negation, then at most two more words of the same sentence, right before the term
_NEGATION = re.compile(r"(?:\b(?:not|no|never|nobody|none|nothing|cannot)|n't)\s+(?:[^\s.!?;]+\s+){0,2}$")


def _uses(said: str, term: str, *, negated: bool) -> bool:
    """Whether ``said`` affirms (``negated=False``) or denies one of ``term``'s alternatives."""
    for alternative in term.split("|"):
        for m in re.finditer(word(alternative), said):
            if bool(_NEGATION.search(said[: m.start()])) is negated:
                return True
    return False


def word(text: str) -> str:
    """A pattern for ``text`` as a whole word, name or number: "locked" is not in "unlocked", "20" is
    not in "20.5" but is in "20.0", and "on" is not the "on" of "based on the state"."""
    pattern = rf"(?<![\w.-]){re.escape(text.lower())}"
    if re.fullmatch(r"-?\d+", text):
        return pattern + r"(?:\.0+)?(?![\w]|\.\d)"
    if re.fullmatch(r"-?\d+\.\d+", text):
        return pattern + r"0*(?![\w]|\d)"
    if text.lower() == "on":
        return pattern + r"(?![\w])(?!\s+(?:the|a|an|this|that|its|your|my|our|their)\b)"
    return pattern + r"(?![\w])"


def _room_answer(said: str, lights: Sequence[tuple[str, bool]]) -> bool:
    """Each light named must be said on or off as it is, in its own clause or in the next one that says
    it ("the ceiling light and the mirror light are on; the counter light is off"); every light that is
    on must be named; "no lights are on" when none is."""
    names = sorted((name for name, _ in lights), key=len, reverse=True)  # "kitchen island" before "kitchen"
    clauses: list[tuple[str | None, bool | None]] = []  # (light named, on?) per clause
    for clause in re.split(r"[,;.]|\band\b|\bbut\b", said):
        name = next((n for n in names if re.search(word(n), clause)), None)
        lit = _uses(clause, "on", negated=False)
        dark = _uses(clause, "off", negated=False) or _uses(clause, "on", negated=True)
        clauses.append((name, None if lit == dark else lit))
    told: dict[str, bool] = {}
    pending: list[str] = []
    for name, said_on in clauses:
        if name is not None:
            pending.append(name)
        if said_on is not None:
            told.update((n, said_on) for n in pending)
            pending = []
    state = dict(lights)
    if any(state[name] != on for name, on in told.items()) or any(on and name not in told for name, on in lights):
        return False
    return bool(told) or _uses(said, "no|none|off|neither", negated=False)


def _state(yes: bool, true: str, false: str) -> Expect:
    """A two-state answer: affirms ``true`` when ``yes``, else ``false``, and never the other."""
    said, other = (true, false) if yes else (false, true)
    return Expect(yes, (said,), (other,))


def floor(checks: Iterable[Expect]) -> float | None:
    """The share a constant answer gets right: the better of "Yes." and "No." to every question."""
    expects = list(checks)
    if not expects:
        return None
    return max(sum(answers(constant, e) for e in expects) / len(expects) for constant in ("Yes.", "No."))


# ------------------------------------------------------------------------------------------------
# drawn states


@dataclass(frozen=True, slots=True)
class _Entity:
    entity_id: str
    domain: str
    name: str  # as the context renders it: "hallway front door"
    room: str  # "hallway"
    short: str  # what a person calls it: "front door" when no other entity of its domain is called that


def entities(entity_ids: Iterable[str], twin_id: str) -> list[_Entity]:
    """The askable entities among ``entity_ids`` (sorted, the household pseudo-entity left out). Ids
    with or without the twin's prefix (a simulator's ``light.home1_x``, Home Assistant's ``light.x``),
    named as ``shared.semantic.render`` names them."""
    prefix = object_prefix(twin_id)
    named = []
    for entity_id in sorted(set(entity_ids)):
        domain, _, obj = entity_id.partition(".")
        if not obj or obj.endswith(HOUSEHOLD_SUFFIX) or domain not in _DRAW:
            continue
        named.append((entity_id, domain, obj.removeprefix(prefix).replace("_", " ")))
    room = rooms([name for _, _, name in named])
    rest = {n: n.removeprefix(room[n]).strip() for _, _, n in named}
    counts = Counter((d, rest[n]) for _, d, n in named)
    return [_Entity(e, d, n, room[n], rest[n] if rest[n] and counts[(d, rest[n])] == 1 else n) for e, d, n in named]


def _quantity(e: _Entity) -> str | None:
    return next((q for q in _UNITS if e.entity_id.endswith(q)), None)


def _light(rng: random.Random, _e: _Entity) -> EntityState | None:
    if rng.random() < 0.5:
        return None
    return EntityState("", "on", (("brightness", rng.randrange(3, 256)),))


def _sensor(rng: random.Random, e: _Entity) -> EntityState | None:
    value = {
        "temperature": lambda: format_value(round(rng.uniform(-5.0, 30.0), 1) + 0.0),  # as prompts carry it: "20"
        "humidity": lambda: str(rng.randrange(25, 80)),
        "illuminance": lambda: str(rng.choice((0, rng.randrange(1, 40000)))),
        "power": lambda: str(rng.choice((0, rng.randrange(1, 3500)))),
        "energy": lambda: format_value(round(rng.uniform(10, 40000), 2)),
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
    """One random state of every entity of ``home``. A door's contact sensor agrees with the cover of the
    same name (a garage door is open on both, or closed on both), or "is the garage door open?" would be
    trained both ways on the same lines."""
    out = {}
    covers = {}
    for e in home:
        drawn = _DRAW[e.domain](rng, e) or EntityState("", "off")
        out[e.entity_id] = EntityState(e.entity_id, drawn.state, drawn.attributes)
        if e.domain == "cover":
            covers[e.name] = drawn.state == "open"
    for e in home:
        if e.domain == "binary_sensor" and e.name in covers:
            out[e.entity_id] = EntityState(e.entity_id, "on" if covers[e.name] else "off")
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


def _toggle(
    name: str,
    applies: Callable[[_Entity], bool],
    train: tuple[str, ...],
    heldout: tuple[str, ...],
    when: str,
    said: tuple[str, str],
    subject: str = "the {name}",
) -> _Ask:
    """A yes/no question about a two-state entity: yes when its state is ``when``; the answer says
    ``said[0]`` or ``said[1]`` of ``subject`` ("the hallway front door is locked / unlocked")."""
    yes_word, no_word = said

    def answer(e: _Entity, s: EntityState) -> str:
        who = subject.format(name=e.name)
        return _yes_no(s.state == when, f"{who} is {yes_word}", f"{who} is {no_word}")

    return _Ask(name, applies, train, heldout, answer, lambda _e, s: _state(s.state == when, yes_word, no_word))


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
        return Expect(True, ("playing",), ("paused|off|idle",))
    return Expect(False, (s.state or "",), ("playing",))


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
    _toggle(
        "switch",
        lambda e: e.domain == "switch",
        ("Is the {name} on?", "Is the {name} switched on?"),
        ("Tell me whether the {name} is on.",),
        "on",
        ("on", "off"),
    ),
    _toggle(
        "lock",
        lambda e: e.domain == "lock",
        ("Is the {name} locked?", "Is the {short} locked?", "Is the {name} lock locked?"),
        ("Tell me whether the {short} is locked.", "Did someone lock the {name}?"),
        "locked",
        ("locked", "unlocked"),
    ),
    _toggle(
        "opening",
        _opening,
        ("Is the {name} open?", "Is the {name} open right now?"),
        ("Tell me whether the {name} is open.",),
        "on",
        ("open", "closed"),
    ),
    _Ask(
        "motion",
        lambda e: e.domain == "binary_sensor" and e.name.endswith("motion"),
        ("Is there motion in the {room}?", "Does the {name} sensor see anyone?"),
        ("Is anyone moving in the {room}?",),
        lambda e, s: _yes_no(
            s.state == "on", f"the {e.name} sensor detects motion", f"the {e.name} sensor detects no motion"
        ),
        lambda _e, s: _state(s.state == "on", _MOTION, _NO_MOTION),
    ),
    _toggle(
        "binary",
        lambda e: e.domain == "binary_sensor",
        ("Is the {name} sensor on?", "Is the {name} sensor triggered?"),
        ("Tell me whether the {name} sensor is on.",),
        "on",
        ("on", "off"),
        subject="the {name} sensor",
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
        ("Is the {name} playing?", "Is the {short} playing?", "Is anything playing on the {name}?"),
        ("Tell me whether the {short} is playing.",),
        _media_answer,
        _media_expect,
    ),
    _Ask(
        "climate_setting",
        lambda e: e.domain == "climate",
        ("What is the {name} set to?", "What temperature is the {name} set to?"),
        ("Tell me the {name} setting.",),
        lambda e, s: f"The {e.name} is set to {_setting(s)} ({s.state}).",
        lambda _e, s: Expect(None, (_setting(s).removesuffix("°C"),)),
    ),
    _Ask(
        "climate_reading",
        lambda e: e.domain == "climate",
        ("What does the {name} read?", "What temperature does the {name} measure?"),
        ("Tell me the temperature at the {name}.",),
        lambda e, s: f"The {e.name} reads {_reads(s)}.",
        lambda _e, s: Expect(None, (_reads(s).removesuffix("°C"),)),
    ),
    _Ask(
        "room_sensor",
        lambda e: e.domain == "sensor" and e.name == f"{e.room} {_quantity(e)}",
        ("What is the {quantity} in the {room}?", "What's the {quantity} in the {room} now?"),
        ("Tell me the {quantity} in the {room}.",),
        _sensor_answer,
        lambda _e, s: Expect(None, (s.state or "",)),
    ),
    _Ask(
        "sensor",
        lambda e: e.domain == "sensor" and _quantity(e) is not None,
        ("What is the {name}?", "What is the {name} right now?", "What does the {name} sensor say?"),
        ("Tell me the {name}.", "What's the current {name}?"),
        _sensor_answer,
        lambda _e, s: Expect(None, (s.state or "",)),
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
    wording = _wording(rng, ask.train, ask.heldout, split)
    question = wording.format(name=e.name, short=e.short, room=e.room, light=_light_noun(e), quantity=_quantity(e))
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
    expect = Expect(None, (), (), tuple((e.name, s.state == "on") for e, s in lights))
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
    # the gateway sends up to 12 + 24 lines; the answer is the Computed line wherever it stands, so fewer
    # lines teach the same for a fraction of the tokens
    mine = relevant(own, question, 3)
    theirs = relevant(shared, question, 4)
    a = aggs[0]
    answer = f"The {a.name} is {a.value:g}{a.unit} over {a.n} entities."
    if op == "count":
        answer = f"{a.value:g} lights are on in the circle."
    prompt = inter_prompt(twin_id, question, mine, theirs, aggs)
    expect = Expect(None, (f"{a.value:g}",))
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
_MAKER_WEIGHTS = (0.72, 0.2, 0.08)
