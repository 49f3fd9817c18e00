"""CURVE key pairs in zmq.auth certificate files, and the gateway's tenant allow-list.

``<name>.key`` holds the public key (shareable); ``<name>.key_secret`` holds both keys and is created
with mode 0600 from the first byte (never written world-readable and chmod-ed afterwards). The
format is pyzmq's, so ``zmq.auth.load_certificate`` reads these files and vice versa.

Tenants: the gateway's ``tenants_dir`` holds one public certificate per tenant; the file stem is
the tenant id. A tenant owns the twin with its own id and any ``<tenant>.<suffix>`` twin (e.g.
``home1.garage``); see :func:`owns`.
"""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from shared.errors import ConfigError

# no dots: "." separates a tenant's sub-twins ("home1.kitchen", see owns), so a tenant named "home1.x"
# would be speakable-for by tenant "home1"
TENANT_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class KeyPairFiles:
    public: Path
    secret: Path


def generate_keypair(directory: Path, name: str, *, overwrite: bool = False) -> KeyPairFiles:
    """Create ``name.key`` and ``name.key_secret`` (0600) in ``directory``."""
    if TENANT_RE.fullmatch(name) is None:
        raise ConfigError(directory, "name", name, f"must match {TENANT_RE.pattern}")
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.curve_keypair()
    files = KeyPairFiles(directory / f"{name}.key", directory / f"{name}.key_secret")
    if not overwrite and (files.public.exists() or files.secret.exists()):
        raise ConfigError(files.public, "", None, "key files exist already (use --force to replace them)")
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    _write(files.secret, _render(name, now, public, secret), mode=0o600)
    _write(files.public, _render(name, now, public, None), mode=0o644)
    return files


def load_public(path: Path) -> bytes:
    """The z85 public key of a certificate file, or ConfigError."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(path, "", None, f"not a readable CURVE certificate: {exc}") from None
    return _checked(path, public)


def load_secret(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) z85 keys from a secret certificate file, or ConfigError."""
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(path, "", None, f"not a readable CURVE certificate: {exc}") from None
    if secret is None:
        raise ConfigError(path, "secret-key", None, "missing: this is a public certificate")
    return _checked(path, public), _checked(path, secret)


def scan_tenants(directory: Path) -> dict[bytes, str]:
    """Public key (z85) → tenant id for every ``<tenant>.key`` in ``directory``.

    Files that are not valid certificates or have a bad tenant name are skipped (and returned in the
    error list of :func:`scan_tenants_report`); two tenants with one key is a config error.
    """
    table, _ = scan_tenants_report(directory)
    return table


def scan_tenants_report(directory: Path) -> tuple[dict[bytes, str], list[str]]:
    table: dict[bytes, str] = {}
    problems: list[str] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.suffix == ".key")
    except OSError as exc:
        return {}, [f"{directory}: cannot list: {exc.strerror}"]
    for path in paths:
        tenant = path.stem
        if TENANT_RE.fullmatch(tenant) is None:
            problems.append(f"{path}: tenant id must match {TENANT_RE.pattern}")
            continue
        try:
            key = load_public(path)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if key in table:
            problems.append(f"{path}: same public key as tenant {table[key]!r}; both refused")
            table[key] = ""
            continue
        table[key] = tenant
    return {k: v for k, v in table.items() if v}, problems


def owns(tenant: str, twin_id: str) -> bool:
    """Whether ``tenant`` may speak for ``twin_id`` (its own id or ``<tenant>.<anything>``)."""
    return twin_id == tenant or twin_id.startswith(tenant + ".")


def _checked(path: Path, key: bytes) -> bytes:
    if len(key) != 40:
        raise ConfigError(path, "public-key", "<key>", "a z85 CURVE key has 40 characters")
    return key


def _render(name: str, now: str, public: bytes, secret: bytes | None) -> str:
    kind = "secret" if secret is not None else "public"
    lines = [
        f"#   ****  LLM-Twin CURVE {kind} certificate for {name!r}, generated {now}  ****",
        "#   ZeroMQ CURVE certificate (zmq.auth format)" + ("; DO NOT SHARE this file." if secret else "."),
        "metadata",
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, *, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)  # the umask may have narrowed it; never widened beyond `mode`
    os.replace(tmp, path)
