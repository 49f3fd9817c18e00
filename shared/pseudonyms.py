"""Keyed pseudonyms of a home's objects: the adapter learns facts about names only the tenant can resolve.

A twin's adapter links each object's name to its static facts ("home1 kitchen ceiling light: wattage?"
-> "9.5 W"). Whoever holds the adapter (a compromised gateway, a stolen upload) can rank a home's objects
by how likely the adapter finds a value for each of them, and so learn which object a description is
about. With pseudonyms the device uses keyed stand-ins for every object name; the key, and the table from
names to pseudonyms, stay with the tenant. The tenant's query client rewrites names to pseudonyms before a
question leaves (:meth:`Pseudonyms.hide`) and back in the answer (:meth:`Pseudonyms.reveal`), so the
gateway, its prompt database and the adapter never see which pseudonym is which object.

Each object has two pseudonyms, with no word in common (without the key, nothing in the names links them):

* its **state name** (:func:`pseudonym`, ``light.home1_vetopila``), which the state it reports and the
  trained state readings use. It keeps the home prefix (the twin id, which the gateway knows anyway), the
  entity's domain and a kind word at the end of its id (:data:`KINDS`: ``sensor.home1_kitchen_temperature``
  -> ``sensor.home1_vetopila_temperature``), because the compressor's deadbands, the gateway's state
  matching and its aggregates go by them. It hides the object's own words (room, position). Objects with
  the same words (a front door's lock and its contact sensor) get the same words, so a state line reads
  one way whatever the domain.
* its **fact name** (:func:`fact_pseudonym`, ``device.home1_kisufa``: "home1 kisufa device"), which the
  static facts are trained and asked under (``llmtwin query --facts``). It keeps nothing but the home: no
  domain, no kind. Those words are in the real names too, so an adapter that learnt facts next to them
  would still tell an attacker who scores it by real names which door lock has the 30 s auto-lock; under
  a fact name it can only tell him what the base model guesses. One per object (a lock and its door's
  contact sensor differ), with no word in common with the state name. (The facts themselves still say
  what type of object a fact name is: a device class, a unit, a brightness range.)

The household pseudo-entity (``sensor.<home>_profile``) is the home itself and keeps its name; its facts
are guarded by the trained declines instead (``edge.finetune.declines``).

A word is HMAC-SHA256(key, twin id + what it stands for) spelled as four consonant-vowel syllables (24M
spellings), so it is stable across rounds and new objects, and unpredictable without the key. One word
for two things (about 1 in 1,200 for a home of 100 objects, two words each) is refused with the advice to
make a new key.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from shared.errors import ConfigError
from shared.files import atomic_write_bytes
from shared.matching import name_words, pick
from shared.semantic import SENSOR_QUANTITIES, object_prefix
from shared.templates import FactLike, QAPair, is_household, mentions, object_name, render_value, rooms

KEY_BYTES = 32
KEY_FILE = "pseudonym.key"  # in the device's data_dir: the tenant's key
TABLE_FILE = "pseudonyms.json"  # beside it: names -> pseudonyms, for the tenant's query client
SYLLABLES = 4
# a kind, kept as a state name's last word: what a sensor measures or watches, as the compressor, the gateway and
# the state readings read it from the id's last word; a door's lock, cover and contact sensor keep "door" alike
KINDS = (*SENSOR_QUANTITIES, "motion", "door", "window", "gate", "smoke", "leak", "occupancy", "presence", "contact")
FACT_DOMAIN = "device"  # a fact name's domain, the same for every object: "home1 kisufa device"
# static attributes that name the object in other words: never trained under pseudonyms
NAME_ATTRIBUTES = frozenset(("friendly_name", "name", "icon", "entity_picture"))
_LOCK = threading.Lock()  # the trainer's and the pipeline's threads both extend the table file
_CONSONANTS = "bdfgklmnprstvz"
_VOWELS = "aeiou"
_KEY_HEX = re.compile(r"[0-9a-f]{64}")
_WORD = re.compile(r"[^\W_]+")


F = TypeVar("F", bound=FactLike)


@dataclass(frozen=True)
class Pseudonyms:
    """One home's tables (the household is in neither): real entity id -> state name (``table``), and real
    entity id -> fact name (``facts``)."""

    twin_id: str
    table: Mapping[str, str]
    facts: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if set(self.facts) != set(self.table):  # an object without a fact name would be asked by its real name
            raise ValueError("a pseudonym table needs a fact name for exactly the objects it has state names for")

    @classmethod
    def derive(cls, key: bytes, twin_id: str, entity_ids: Iterable[str]) -> Pseudonyms:
        """The tables for ``entity_ids`` of ``twin_id`` under ``key`` (the household left out). Each name
        depends on its own entity id only (:func:`pseudonym`, :func:`fact_pseudonym`), so tables of different
        id sets agree where they overlap. ValueError when one keyed word came out for two things (objects
        with the same own words share their state name's word; any other reuse is a collision)."""
        table: dict[str, str] = {}
        facts: dict[str, str] = {}
        words: dict[str, tuple[str, str]] = {}  # keyed word -> (what it stands for, the first object with it)
        for entity_id in sorted(set(entity_ids)):
            fake = pseudonym(key, twin_id, entity_id)
            if fake == entity_id:  # the household
                continue
            fact = fact_pseudonym(key, twin_id, entity_id)
            stem = _stem_and_kind(twin_id, entity_id)[0]
            for word, meaning in ((_word(twin_id, fake), stem), (_word(twin_id, fact), f"fact:{entity_id}")):
                first = words.setdefault(word, (meaning, entity_id))
                if first[0] != meaning:
                    raise ValueError(
                        f"{first[1]} and {entity_id} got the same pseudonym {word} (about 1 in 1,200 for a "
                        "100-object home): make a new pseudonym key"
                    )
            table[entity_id], facts[entity_id] = fake, fact
        return cls(twin_id, table, facts)

    def entity(self, entity_id: str) -> str:
        """The state name of ``entity_id`` (itself when it has none: the household, another home's)."""
        return self.table.get(entity_id, entity_id)

    def fact(self, entity_id: str) -> str:
        """The fact name of ``entity_id`` (itself when it has none: the household, another home's)."""
        return self.facts.get(entity_id, entity_id)

    def records(self, records: Iterable[F]) -> list[F]:
        """``records`` as the device trains on them (dataclass records): every entity id, and every full
        object name in a text value, under its fact name. Left out: the facts that name the object in other words
        (:data:`NAME_ATTRIBUTES`), and those its own words spell out: a "kitchen ceiling light" is not asked
        its room under its real name (``shared.templates.is_one_way``), and under the pseudonym that answer
        would tie it back to the name."""
        out: list[F] = []
        for r in records:
            fake = self.fact(r.entity_id)
            if fake != r.entity_id and self._names_itself(r):
                continue
            value = r.value
            if isinstance(value, str):
                value = self.hide(value, facts=True)
            elif isinstance(value, tuple):
                value = tuple(self.hide(v, facts=True) for v in value)
            out.append(replace(r, entity_id=fake, value=value))  # type: ignore[type-var]
        return out

    def state_ids(self, entity_ids: Iterable[str]) -> tuple[str, ...]:
        """The state names of ``entity_ids``, each once, in order: what a round's state readings draw on."""
        return tuple(dict.fromkeys(self.entity(e) for e in entity_ids))

    def _names_itself(self, record: FactLike) -> bool:
        """Whether a fact's value names its object: a name attribute, or a value its own words spell out."""
        value = render_value(record.attribute, record.value)
        return record.attribute in NAME_ATTRIBUTES or mentions(self._words(record.entity_id), value)

    def _words(self, entity_id: str) -> str:
        """An object's own words, without its home and domain: "kitchen ceiling"."""
        return entity_id.partition(".")[2].removeprefix(object_prefix(self.twin_id)).replace("_", " ")

    def hide(self, text: str, *, facts: bool = False) -> str:
        """``text`` with each object's name replaced by its state name's: the full name ("home1 kitchen ceiling
        light", "kitchen ceiling light") and the object's own words as state lines write them ("kitchen
        ceiling", "home1 kitchen ceiling"); and a room named alone by the state words of its objects that the
        question is about, as the gateway's state matching picks them by the real names (``shared.matching``):
        "Is it warm in the kitchen?" -> "... in the gazi?" (its temperature sensor), "Is anything on in the
        kitchen?" -> "... in the gazi, vetopila and zadufo?" (all of them). So the gateway finds the state it
        would by the room's name, without learning the name. With ``facts`` (a question
        about static facts, for the adapter alone) by its fact name's instead, full names only ("kisufa
        device"). Case-insensitive, whole words, the longest first. A name worded otherwise ("the ceiling
        lamp") is not recognised and leaves as written."""
        if facts:
            return self._hiding_facts(text)
        return self._hiding(text, self._asked_rooms(text))

    def _asked_rooms(self, text: str) -> dict[str, str]:
        """(room as written, the listing of those of its objects that ``text`` is about) for each room where that
        is some of its objects; where it is none or all, the room goes out as all of them (:meth:`_room_forms`)."""
        chosen = {self._ids[i] for i in pick(self._name_words, text)}
        forms = []
        for room, members in self._rooms.items():
            mine = [m for m in members if m in chosen]
            if mine and len(mine) < len(members):
                forms.append((room, self._listing(mine)))
        return dict(self._names(forms))

    @functools.cached_property
    def _ids(self) -> list[str]:
        return sorted(self.table)

    @functools.cached_property
    def _name_words(self) -> list[set[str]]:
        """``shared.matching.name_words`` of each real name, in :attr:`_ids` order."""
        return [name_words(self.twin_id, e) for e in self._ids]

    @functools.cached_property
    def _rooms(self) -> dict[str, list[str]]:
        """Room -> its objects (real entity ids), rooms as ``shared.templates.rooms`` finds them in the own words."""
        own = {real: self._words(real) for real in self._ids}
        room_of = rooms(sorted(set(own.values())))
        members: dict[str, list[str]] = {}
        for real, words in own.items():
            members.setdefault(room_of[words], []).append(real)
        return dict(sorted(members.items()))

    def _listing(self, members: Iterable[str]) -> str:
        """The objects' state words, listed: "gazi, vetopila and zadufo" (alike in own words, alike in word)."""
        return _listed(sorted({_word(self.twin_id, self.table[m]) for m in members}))

    def unhidden(self, text: str) -> list[str]:
        """The words of ``text`` (as :meth:`hide` left it) that only the objects' own words use ("kitchen",
        "ceiling"): a name worded otherwise than :meth:`hide` knows, which would leave as written. In order."""
        words = self._own_words
        return list(dict.fromkeys(w for w in _WORD.findall(text.casefold()) if w in words))

    def named_by(self, words: Iterable[str]) -> list[str]:
        """The real names of the objects whose own words share the most of ``words`` (none: nothing shared),
        in name order: what to write instead of a name worded otherwise."""
        wanted = {w.casefold() for w in words}
        shared = {real: len(wanted & set(self._words(real).split())) for real in self.table}
        best = max(shared.values(), default=0)
        return sorted(object_name(e).removeprefix(self._home) for e, k in shared.items() if best and k == best)

    @functools.cached_property
    def _home(self) -> str:
        """How a name spells the home, with its space: "home1 "."""
        return object_prefix(self.twin_id).replace("_", " ").strip() + " "

    @functools.cached_property
    def _own_words(self) -> frozenset[str]:
        """The words of the objects' real names that no pseudonym keeps (the home, and a state name's kind)."""
        real = {w for e in self.table for w in self._words(e).split()}
        kept = {w for e in (*self.table.values(), *self.facts.values()) for w in object_name(e).split()} | set(KINDS)
        return frozenset(real - kept)

    def reveal(self, text: str) -> str:
        """The inverse of :meth:`hide` on a twin's answer: state and fact names back to the objects' names."""
        return self._revealing(text)

    def pair(self, pair: QAPair) -> QAPair:
        """A static fact's question/answer pair as the twin was trained on it (object and question under its
        fact name)."""
        return replace(pair, entity_id=self.fact(pair.entity_id), question=self.hide(pair.question, facts=True))

    @functools.cached_property
    def _hiding(self) -> _Rewriter:
        full, rooms, own = self._state_forms()
        return _Rewriter(self._names([*full, *rooms, *own]))  # a room that is an object's own words is the room

    @functools.cached_property
    def _hiding_facts(self) -> _Rewriter:
        return _Rewriter(self._names(self._fact_forms()))

    @functools.cached_property
    def _revealing(self) -> _Rewriter:
        full, rooms, own = self._state_forms()
        # a one-object room's word reads back as the object's own words; a word alone (some of a room's objects,
        # as hide() lists them) as what it stands for: "gazi" of the kitchen's sensors is "kitchen"
        stems = [(_stem_and_kind(self.twin_id, real)[0].replace("_", " "), self._listing([real])) for real in self._ids]
        forms = (*self._fact_forms(), *full, *own, *rooms, *(form for form in stems if form[0]))
        return _Rewriter(self._names([(new, old) for old, new in forms]))

    def _state_forms(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(real, state name) as written without the home: full names, rooms, and own words as state lines
        write them."""
        own = [(self._words(real), self._words(fake)) for real, fake in self.table.items()]
        return self._full_forms(self.table), self._room_forms(), own

    def _room_forms(self) -> list[tuple[str, str]]:
        """(room, all its objects' state words): "kitchen" -> "gazi, vetopila and zadufo"."""
        return [(room, self._listing(members)) for room, members in self._rooms.items()]

    def _fact_forms(self) -> list[tuple[str, str]]:
        """(real, fact name) as written without the home: full names."""
        return self._full_forms(self.facts)

    def _full_forms(self, names: Mapping[str, str]) -> list[tuple[str, str]]:
        """(real full name, pseudonym's full name) of ``names``, without the home."""
        return [
            (object_name(r).removeprefix(self._home), object_name(f).removeprefix(self._home)) for r, f in names.items()
        ]

    def _names(self, forms: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """(written form, replacement): ``forms`` with and without the home, the first of a form kept; longest first."""
        out: dict[str, str] = {}
        for old, new in forms:
            out.setdefault(old, new)
            out.setdefault(self._home + old, self._home + new)
        return sorted(out.items(), key=lambda pair: -len(pair[0]))

    def to_json(self) -> bytes:
        doc = {"twin_id": self.twin_id, "table": dict(sorted(self.table.items()))}
        doc |= {"facts": dict(sorted(self.facts.items()))}
        return (json.dumps(doc, indent=1) + "\n").encode()

    @classmethod
    def load(cls, path: Path) -> Pseudonyms:
        """A table written by :meth:`save`; a bad file is a ConfigError naming it."""
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(path, "", None, f"cannot read a pseudonym table: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("twin_id"), str):
            raise ConfigError(path, "", None, "not a pseudonym table (it needs twin_id, table and facts)")
        tables: list[dict[str, str]] = []
        for name in ("table", "facts"):
            entries = doc.get(name)
            if not isinstance(entries, dict):  # facts: a table from before fact names (the daemon rewrites it)
                raise ConfigError(path, name, None, "missing: restart the daemon to write the table again")
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in entries.items()):
                raise ConfigError(path, name, "...", "every entry must map an entity id to an entity id")
            tables.append(entries)
        if set(tables[0]) != set(tables[1]):
            raise ConfigError(
                path, "facts", "...", "names other objects than table: restart the daemon to write it again"
            )
        return cls(doc["twin_id"], *tables)

    def save(self, path: Path) -> None:
        """Owner-only (the table is the tenant's secret, like the key)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, self.to_json())


def load_or_create_key(path: Path) -> bytes:
    """The tenant's pseudonym key at ``path`` (64 hex digits), created owner-only when absent."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _create(path, (secrets.token_hex(KEY_BYTES) + "\n").encode())
    text = path.read_text(encoding="ascii", errors="replace").strip()
    if not _KEY_HEX.fullmatch(text):
        raise ConfigError(path, "key", "<key>", f"a pseudonym key is {2 * KEY_BYTES} lowercase hex digits")
    return bytes.fromhex(text)


def _create(path: Path, data: bytes) -> None:
    """Write ``path`` whole and owner-only unless it exists (made meanwhile by another process: keep that)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        os.unlink(tmp)


def for_device(data_dir: Path, twin_id: str, entity_ids: Iterable[str]) -> Pseudonyms:
    """The device's table for ``entity_ids`` under its key (``<data_dir>/pseudonym.key``, made on first use),
    written to ``<data_dir>/pseudonyms.json`` for the tenant's query client (``llmtwin query --config``)."""
    path = data_dir / TABLE_FILE
    with _LOCK:
        try:
            stored = path.read_bytes()
        except OSError:
            stored = b""
        known = _known(stored, twin_id)  # the trainer names the static facts' objects, the pipeline the state's
        table = Pseudonyms.derive(load_or_create_key(data_dir / KEY_FILE), twin_id, set(entity_ids) | known)
        if stored != table.to_json():
            table.save(path)
    return table


def _known(stored: bytes, twin_id: str) -> set[str]:
    """The objects a stored table names for ``twin_id``: none when there is none or it is unreadable
    (rewritten). Read from its state names, which tables from before fact names have too."""
    try:
        doc = json.loads(stored)
    except ValueError:
        return set()
    table = doc.get("table") if isinstance(doc, dict) and doc.get("twin_id") == twin_id else None
    return {k for k in table if isinstance(k, str)} if isinstance(table, dict) else set()


def pseudonym(key: bytes, twin_id: str, entity_id: str) -> str:
    """``light.home1_kitchen_ceiling`` -> ``light.home1_vetopila``: the domain, the home prefix and a kind
    word (:data:`KINDS`) kept, the object's other words replaced by HMAC-SHA256(key, twin id, those words)
    spelled as syllables. The household pseudo-entity keeps its id."""
    if _keeps_its_id(key, entity_id):
        return entity_id
    stem, kind = _stem_and_kind(twin_id, entity_id)
    domain = entity_id.partition(".")[0]
    return f"{domain}.{object_prefix(twin_id)}{_spell(key, twin_id, stem)}" + (f"_{kind}" if kind else "")


def _keeps_its_id(key: bytes, entity_id: str) -> bool:
    """Whether ``entity_id`` keeps its id (the household); ValueError for a key too short to name anything."""
    if len(key) < 16:
        raise ValueError("a pseudonym key needs at least 16 bytes")
    return is_household(entity_id)


def _stem_and_kind(twin_id: str, entity_id: str) -> tuple[str, str]:
    """``sensor.home1_kitchen_temperature`` -> ("kitchen", "temperature"): an object's own words and its kind
    (:data:`KINDS`, "" for none), as in its id."""
    words = entity_id.partition(".")[2].removeprefix(object_prefix(twin_id))
    kind = next((k for k in KINDS if words == k or words.endswith("_" + k)), "")
    return words.removesuffix(kind).rstrip("_"), kind


def fact_pseudonym(key: bytes, twin_id: str, entity_id: str) -> str:
    """``light.home1_kitchen_ceiling`` -> ``device.home1_kisufa``: the home prefix kept, the domain made
    :data:`FACT_DOMAIN` and the rest replaced by HMAC-SHA256(key, twin id, the whole entity id) spelled as
    syllables, another word than :func:`pseudonym`'s. The household pseudo-entity keeps its id."""
    if _keeps_its_id(key, entity_id):
        return entity_id
    return f"{FACT_DOMAIN}.{object_prefix(twin_id)}{_spell(key, twin_id, f'fact:{entity_id}')}"


def _listed(words: Sequence[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _word(twin_id: str, fake: str) -> str:
    """The keyed word of a state or fact name: ``light.home1_vetopila_door`` -> "vetopila"."""
    return fake.partition(".")[2].removeprefix(object_prefix(twin_id)).partition("_")[0]


def _spell(key: bytes, twin_id: str, stem: str) -> str:
    digest = hmac.new(key, f"{twin_id}\0{stem}".encode(), hashlib.sha256).digest()
    n = int.from_bytes(digest[:8], "big")
    out = []
    for _ in range(SYLLABLES):
        n, c = divmod(n, len(_CONSONANTS))
        n, v = divmod(n, len(_VOWELS))
        out.append(_CONSONANTS[c] + _VOWELS[v])
    return "".join(out)


class _Rewriter:
    """Replaces every written form of ``names`` (longest first, case-insensitive, whole words); a call's
    ``instead`` replaces some forms otherwise (forms of ``names``, as :meth:`Pseudonyms._names` writes them)."""

    def __init__(self, names: Sequence[tuple[str, str]]) -> None:
        self._lookup = {old.casefold(): new for old, new in names}
        alternatives = "|".join(re.escape(old) for old, _ in names)
        self._pattern = re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE) if names else None

    def __call__(self, text: str, instead: Mapping[str, str] | None = None) -> str:
        if self._pattern is None:
            return text
        other = {old.casefold(): new for old, new in (instead or {}).items()}
        return self._pattern.sub(lambda m: other.get(k := m.group(1).casefold()) or self._lookup[k], text)
