"""Load a TOML file into a frozen config dataclass, or raise ConfigError naming file, key and value."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

from shared.errors import ConfigError
from shared.typed import FieldError, from_plain

C = TypeVar("C")


def read_toml(path: Path) -> dict[str, object]:
    """Parse a TOML file; unreadable or invalid files raise ConfigError."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(path, "", None, "file not found") from None
    except OSError as exc:
        raise ConfigError(path, "", None, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", None, f"invalid TOML: {exc}") from None


def load_config(cls: type[C], path: Path | str) -> C:
    """Read and validate ``path`` as ``cls``. Relative paths inside resolve against its folder."""
    path = Path(path)
    data = read_toml(path)
    return parse_config(cls, data, path)


def parse_config(cls: type[C], data: dict[str, object], path: Path) -> C:
    """Validate already-parsed TOML data (e.g. built by a program) as ``cls``."""
    try:
        return from_plain(cls, data, base_dir=path.resolve().parent)
    except FieldError as exc:
        raise ConfigError(path, exc.key, exc.value, exc.reason) from None
