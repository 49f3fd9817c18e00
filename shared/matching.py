"""Which objects a question is about, by their names: the words a question and a name share.

Pure functions, shared by the gateway, which narrows a twin's context to the states a question names
(``gateway.queries.relevant``), and by the tenant's query client, which does the same on the real names
before it sends a room's objects under their pseudonyms (``shared.pseudonyms``), so both pick alike.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from shared.semantic import object_prefix

_SYNONYMS = {
    "lamp": "light",
    "lamps": "light",
    "lights": "light",
    "bright": "brightness",
    "dim": "brightness",
    "warm": "temperature",
    "cold": "temperature",
    "hot": "temperature",
    "temp": "temperature",
    "heating": "climate",
    "thermostat": "climate",
    "door": "lock",
    "locked": "lock",
    "unlocked": "lock",
    "tv": "media_player",
    "music": "media_player",
    "playing": "media_player",
    "blind": "cover",
    "blinds": "cover",
    "shutter": "cover",
    "plug": "switch",
    "motion": "binary_sensor",
    "window": "binary_sensor",
    "humid": "humidity",
    "energy": "energy",
    "power": "power",
}
_WORD = re.compile(r"[a-z0-9]+")
_NUMBERED = re.compile(r"([a-z]+)([0-9]+)")
# words too generic to pick a state by: "every room" is not the living room (its "living" still counts)
_GENERIC = frozenset(("room", "rooms"))


def words(text: str) -> set[str]:
    """The matching words of ``text``: lower case, synonyms to their domain or attribute ("lamps" is
    "light", "warm" is "temperature"), plurals also singular, "bedroom2" also "bedroom" and "2"."""
    out = set()
    for w in _WORD.findall(text.lower()):
        if w in _GENERIC:
            continue
        out.add(_SYNONYMS.get(w, w))
        if w.endswith("s") and len(w) > 3:
            out.add(_SYNONYMS.get(w[:-1], w[:-1]))
        numbered = _NUMBERED.fullmatch(w)
        if numbered:
            out.update((_SYNONYMS.get(numbered[1], numbered[1]), numbered[2]))
    return out


def name_words(twin_id: str, entity_id: str) -> set[str]:
    """The words of an object's name as a state line renders it, and its domain (no twin prefix: "home1" is
    not "home")."""
    domain, _, obj = entity_id.partition(".")
    kinds = {domain, "sensor"} if domain == "binary_sensor" else {domain}  # a "motion sensor" is a binary one
    return words(obj.removeprefix(object_prefix(twin_id)).replace("_", " ")) | kinds


def pick(names: Sequence[set[str]], question: str) -> list[int]:
    """Indices into ``names`` (each one object's :func:`name_words`) of the objects ``question`` is about, in
    the order picked: few, best-matching objects that together cover every word of the question that names
    anything here. Greedily: the objects sharing the most still-uncovered words with the question, every
    one tied for that (and for their total), then again for the words left. "Is the kitchen ceiling light
    on?" picks that light, not every light and every kitchen sensor; "Which lights are on?" every light."""
    asked = words(question)
    named = [n & asked for n in names]
    uncovered = set().union(*named)
    chosen: list[int] = []
    while uncovered:
        gains = [(len(n & uncovered), len(n), i) for i, n in enumerate(named) if i not in chosen and n & uncovered]
        best = max((gain, total) for gain, total, _ in gains)
        tier = [i for gain, total, i in gains if (gain, total) == best]
        chosen.extend(tier)
        uncovered -= set().union(*(named[i] for i in tier))
    return chosen
