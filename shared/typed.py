"""Strict conversion of plain data (decoded msgpack, parsed TOML) into frozen dataclasses.

One mechanism serves the wire protocol and the config files, so both reject the same things the
same way: unknown keys, missing keys, wrong types (a bool is not an int), ints out of range,
non-finite floats, strings and sequences over their length limits, values outside a ``Literal``.
Limits are declared on the fields with ``typing.Annotated``::

    @dataclass(frozen=True, slots=True)
    class Query:
        twin_id: Annotated[str, Length(1, 64), Pattern(TWIN_ID)]
        max_new_tokens: Annotated[int, Range(1, 4096)] = 64

Failures raise :class:`FieldError` carrying the key path (``sources[1].port``); the boundary that
called :func:`from_plain` turns it into a ``SchemaError`` (wire) or a ``ConfigError`` (config).
Conversion only descends as deep as the declared types, so hostile nesting cannot recurse here.
A dataclass may define ``validate(self) -> None`` for cross-field rules; it raises FieldError with
a key relative to itself.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

T = TypeVar("T")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive numeric bounds. Ints default to the signed 64-bit range."""

    ge: float | None = None
    le: float | None = None


@dataclass(frozen=True, slots=True)
class Length:
    """Inclusive length bounds of a str (characters), bytes, tuple or dict."""

    min: int = 0
    max: int = 4096


@dataclass(frozen=True, slots=True)
class Pattern:
    """A str must fully match this regular expression."""

    regex: str


class FieldError(Exception):
    """A value does not fit its declared type. ``key`` is the dotted path from the root."""

    def __init__(self, key: str, value: object, reason: str) -> None:
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key or '<root>'}: {reason}")

    def under(self, prefix: str) -> FieldError:
        return FieldError(_join(prefix, self.key), self.value, self.reason)

    @property
    def safe_key(self) -> str:
        """The key path without input-controlled parts (safe to send back to a peer)."""
        return self.key


class UnknownKeyError(FieldError):
    """A map holds a key the struct does not declare; ``parent`` is the path of that map."""

    def __init__(self, parent: str, name: str, value: object) -> None:
        self.parent = parent
        super().__init__(_join(parent, name), value, "unknown key")

    def under(self, prefix: str) -> FieldError:
        name = self.key[len(self.parent) :].lstrip(".")
        return UnknownKeyError(_join(prefix, self.parent), name, self.value)

    @property
    def safe_key(self) -> str:
        return self.parent


Converter = Callable[[object, str], object]


@dataclass(frozen=True, slots=True)
class _Context:
    """Conversion settings: relative Paths resolve against ``base_dir`` (config files)."""

    base_dir: Path | None = None


def from_plain(cls: type[T], data: object, *, base_dir: Path | None = None) -> T:
    """Build ``cls`` (a dataclass) from plain data, or raise FieldError."""
    result = _converter(typing.cast(Any, cls), _Context(base_dir))(data, "")
    return typing.cast(T, result)


def to_plain(obj: object, *, omit_defaults: bool = False) -> Any:
    """The plain-data form of a dataclass tree: dicts, lists, str, bytes, numbers, bools, None."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if omit_defaults and _equals_default(f, value):
                continue
            out[f.name] = to_plain(value, omit_defaults=omit_defaults)
        return out
    if isinstance(obj, tuple | list):
        return [to_plain(v, omit_defaults=omit_defaults) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v, omit_defaults=omit_defaults) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _equals_default(f: dataclasses.Field[Any], value: object) -> bool:
    if f.default is not dataclasses.MISSING:
        return bool(value == f.default)
    if f.default_factory is not dataclasses.MISSING:
        return bool(value == f.default_factory())
    return False


# ------------------------------------------------------------------------------------------------
# converter construction (cached per type and context)


@functools.cache
def _converter(tp: Any, ctx: _Context) -> Converter:
    base, metas = _unwrap_annotated(tp)
    origin = typing.get_origin(base)
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        return _dataclass_converter(base, ctx)
    if origin is Literal:
        return _literal_converter(typing.get_args(base))
    if origin in (Union, types.UnionType):
        return _union_converter(typing.get_args(base), ctx)
    if origin is tuple:
        return _tuple_converter(typing.get_args(base), metas, ctx)
    if origin is dict:
        return _dict_converter(typing.get_args(base), metas, ctx)
    scalar = _SCALARS.get(base)
    if scalar is None:
        raise TypeError(f"typed: unsupported field type {tp!r}")
    return scalar(metas, ctx)


def _unwrap_annotated(tp: Any) -> tuple[Any, tuple[object, ...]]:
    if typing.get_origin(tp) is typing.Annotated:
        args = typing.get_args(tp)
        return args[0], tuple(args[1:])
    return tp, ()


def _meta(metas: tuple[object, ...], kind: type[T]) -> T | None:
    for m in metas:
        if isinstance(m, kind):
            return m
    return None


def _dataclass_converter(cls: type, ctx: _Context) -> Converter:
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    plan = [(f.name, _converter(hints[f.name], ctx), _has_default(f)) for f in fields]
    names = {f.name for f in fields}

    def convert(value: object, key: str) -> object:
        if not isinstance(value, Mapping):
            raise FieldError(key, value, f"expected a table/map, got {_kind(value)}")
        for k in value:
            if not isinstance(k, str):
                raise FieldError(key, k, "keys must be strings")
            if k not in names:
                raise UnknownKeyError(key, k, value[k])
        kwargs: dict[str, object] = {}
        for name, conv, has_default in plan:
            if name in value:
                kwargs[name] = conv(value[name], _join(key, name))
            elif not has_default:
                raise FieldError(_join(key, name), None, "missing required key")
        obj = cls(**kwargs)
        check = getattr(obj, "validate", None)
        if check is not None:
            try:
                check()
            except FieldError as exc:
                raise exc.under(key) from None
        return obj

    return convert


def _has_default(f: dataclasses.Field[Any]) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _literal_converter(choices: tuple[object, ...]) -> Converter:
    def convert(value: object, key: str) -> object:
        for c in choices:
            if type(value) is type(c) and value == c:
                return value
        shown = ", ".join(repr(c) for c in choices)
        raise FieldError(key, value, f"must be one of {shown}")

    return convert


def _union_converter(members: tuple[Any, ...], ctx: _Context) -> Converter:
    allows_none = type(None) in members
    rest = tuple(m for m in members if m is not type(None))
    tagged = _tag_table(rest, ctx)
    if tagged is None and len(rest) != 1:
        raise TypeError(f"typed: only X | None or tagged dataclass unions are supported: {members!r}")
    single = _converter(rest[0], ctx) if tagged is None else None

    def convert(value: object, key: str) -> object:
        if value is None and allows_none:
            return None
        if single is not None:
            return single(value, key)
        assert tagged is not None  # built above: either single or tagged
        return _dispatch_tagged(tagged, value, key)

    return convert


def _tag_table(members: tuple[Any, ...], ctx: _Context) -> dict[str, Converter] | None:
    """Dataclasses discriminated by a ``type: Literal["name"]`` field, or None."""
    if not members or not all(dataclasses.is_dataclass(m) for m in members):
        return None
    table: dict[str, Converter] = {}
    for m in members:
        hint = typing.get_type_hints(m, include_extras=True).get("type")
        base, _ = _unwrap_annotated(hint)
        if typing.get_origin(base) is not Literal or len(typing.get_args(base)) != 1:
            return None
        table[typing.get_args(base)[0]] = _converter(m, ctx)
    return table


def _dispatch_tagged(table: dict[str, Converter], value: object, key: str) -> object:
    if not isinstance(value, Mapping):
        raise FieldError(key, value, f"expected a table/map, got {_kind(value)}")
    tag = value.get("type")
    conv = table.get(tag) if isinstance(tag, str) else None
    if conv is None:
        raise FieldError(_join(key, "type"), tag, f"must be one of {', '.join(sorted(table))}")
    return conv(value, key)


def _tuple_converter(args: tuple[Any, ...], metas: tuple[object, ...], ctx: _Context) -> Converter:
    if len(args) != 2 or args[1] is not Ellipsis:
        raise TypeError("typed: only tuple[T, ...] is supported")
    item = _converter(args[0], ctx)
    length = _meta(metas, Length) or Length()

    def convert(value: object, key: str) -> object:
        if not isinstance(value, list | tuple):
            raise FieldError(key, value, f"expected an array, got {_kind(value)}")
        _check_length(value, length, key, "items")
        return tuple(item(v, f"{key}[{i}]") for i, v in enumerate(value))

    return convert


def _dict_converter(args: tuple[Any, ...], metas: tuple[object, ...], ctx: _Context) -> Converter:
    if args[0] is not str:
        raise TypeError("typed: only dict[str, T] is supported")
    item = _converter(args[1], ctx)
    length = _meta(metas, Length) or Length(0, 256)

    def convert(value: object, key: str) -> object:
        if not isinstance(value, Mapping):
            raise FieldError(key, value, f"expected a table/map, got {_kind(value)}")
        _check_length(value, length, key, "entries")
        out: dict[str, object] = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise FieldError(key, k, "keys must be strings")
            out[k] = item(v, _join(key, k))
        return out

    return convert


# ------------------------------------------------------------------------------------------------
# scalars


def _int(metas: tuple[object, ...], ctx: _Context) -> Converter:
    rng = _meta(metas, Range) or Range()
    lo = INT64_MIN if rng.ge is None else rng.ge
    hi = INT64_MAX if rng.le is None else rng.le

    def convert(value: object, key: str) -> object:
        if type(value) is not int:
            raise FieldError(key, value, f"expected an integer, got {_kind(value)}")
        if not lo <= value <= hi:
            raise FieldError(key, value, f"out of range [{_num(lo)}, {_num(hi)}]")
        return value

    return convert


def _float(metas: tuple[object, ...], ctx: _Context) -> Converter:
    rng = _meta(metas, Range) or Range()

    def convert(value: object, key: str) -> object:
        if type(value) not in (int, float):
            raise FieldError(key, value, f"expected a number, got {_kind(value)}")
        number = float(typing.cast(float, value))
        if not math.isfinite(number):
            raise FieldError(key, value, "must be a finite number")
        if (rng.ge is not None and number < rng.ge) or (rng.le is not None and number > rng.le):
            raise FieldError(key, value, f"out of range [{_num(rng.ge)}, {_num(rng.le)}]")
        return number

    return convert


def _bool(metas: tuple[object, ...], ctx: _Context) -> Converter:
    def convert(value: object, key: str) -> object:
        if type(value) is not bool:
            raise FieldError(key, value, f"expected true/false, got {_kind(value)}")
        return value

    return convert


def _str(metas: tuple[object, ...], ctx: _Context) -> Converter:
    length = _meta(metas, Length) or Length()
    pattern = _meta(metas, Pattern)
    compiled = re.compile(pattern.regex) if pattern else None

    def convert(value: object, key: str) -> object:
        if type(value) is not str:
            raise FieldError(key, value, f"expected a string, got {_kind(value)}")
        _check_length(value, length, key, "characters")
        if compiled is not None and compiled.fullmatch(value) is None:
            raise FieldError(key, value, f"must match {compiled.pattern}")
        return value

    return convert


def _bytes(metas: tuple[object, ...], ctx: _Context) -> Converter:
    length = _meta(metas, Length) or Length(0, 1 << 20)

    def convert(value: object, key: str) -> object:
        if type(value) is not bytes:
            raise FieldError(key, "<binary>", f"expected binary data, got {_kind(value)}")
        _check_length(value, length, key, "bytes")
        return value

    return convert


def _path(metas: tuple[object, ...], ctx: _Context) -> Converter:
    as_str = _str(metas, ctx)

    def convert(value: object, key: str) -> object:
        text = typing.cast(str, as_str(value, key))
        if not text:
            raise FieldError(key, value, "must not be empty")
        path = Path(text).expanduser()
        if not path.is_absolute() and ctx.base_dir is not None:
            path = ctx.base_dir / path
        return path

    return convert


_SCALARS: dict[Any, Callable[[tuple[object, ...], _Context], Converter]] = {
    int: _int,
    float: _float,
    bool: _bool,
    str: _str,
    bytes: _bytes,
    Path: _path,
}


def _check_length(value: typing.Sized, length: Length, key: str, unit: str) -> None:
    n = len(value)
    if n < length.min or n > length.max:
        shown: object = "<binary>" if isinstance(value, bytes) else value
        raise FieldError(key, shown, f"length {n} outside [{length.min}, {length.max}] {unit}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bytes):
        return "binary data"
    if isinstance(value, Mapping):
        return "a table/map"
    if isinstance(value, list | tuple):
        return "an array"
    if value is None:
        return "nothing (nil)"
    return type(value).__name__


def _num(x: float | None) -> str:
    if x is None:
        return "inf"
    return str(int(x)) if float(x).is_integer() else str(x)


def _join(prefix: str, key: str) -> str:
    if not prefix:
        return key
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"
