"""The adapter registry: chunked resumable uploads, verified before activation, versions per twin.

``begin`` → ``chunk``* → ``commit``. A ``begin`` matching an unfinished upload (tenant, twin, version,
sha256, size) resumes it: same upload id, ``received`` = bytes held, across reconnects and gateway
restarts. ``commit`` hashes the staging file, verifies it with :func:`~shared.adapters.read_adapter`
(hash, base model, shapes, finite values), moves it into content-addressed storage and, in one
transaction, records the version and makes it active. Versions of a twin only grow; the newest
``keep_versions`` (always including the active one) are kept for rollback.

Durability: a crash at any point leaves a state a restart continues from.

- A chunk is appended and fsynced *before* ``received`` is raised in SQLite, so ``received`` never
  claims bytes that are not on disk. A longer staging file (crash between write and update) is cut
  back; a shorter one (file lost) lowers ``received`` and the client resends from there.
- A staging file exists only while its row does (created by the first chunk, deleted before the row).
- An artifact is in storage (fsync, ``os.replace``, directory fsync) before the version row naming it
  is committed; a stored file is deleted only once no version row references it.

Layout under ``data_dir``: ``uploads/<upload id hex>.part`` (staging), and per sha256
``adapters/<sha[:2]>/<sha>.onnx_adapter`` + ``<sha>.manifest.json`` (the first storer's manifest).
The format holds tensors only, so versions of different twins may share an artifact yet differ in
fields the bytes do not carry (twin id, alpha, training summary): each version keeps its own manifest
in SQLite and :meth:`AdapterRegistry.load` returns that one.

Wire errors never echo input: rejection reasons are fixed strings; the full reason is logged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from shared.adapters import ARTIFACT_SUFFIX, AdapterManifest, LoadedAdapter, manifest_path, read_adapter
from shared.db import transaction
from shared.errors import (
    AdapterBaseMismatch,
    AdapterCorrupt,
    AdapterError,
    AdapterHashMismatch,
    AdapterNonFinite,
    AdapterRejected,
    AdapterShapeError,
    ModelError,
    RateLimited,
    SemanticError,
    TooLarge,
    UnknownTwin,
    UnknownUpload,
    UploadGap,
)
from shared.modelspec import ModelSpec
from shared.protocol.messages import AdapterBegin, AdapterChunk, AdapterCommit
from shared.protocol.results import UploadStatus

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS adapter_uploads (
    upload_id BLOB PRIMARY KEY, tenant TEXT NOT NULL, twin_id TEXT NOT NULL, version INTEGER NOT NULL,
    size INTEGER NOT NULL, sha256 TEXT NOT NULL, manifest BLOB NOT NULL,
    received INTEGER NOT NULL, updated_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS adapter_uploads_by_content
    ON adapter_uploads (tenant, twin_id, version, sha256, size);
CREATE TABLE IF NOT EXISTS adapter_versions (
    twin_id TEXT NOT NULL, version INTEGER NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
    manifest BLOB NOT NULL, tenant TEXT NOT NULL, upload_id BLOB NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (twin_id, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS adapter_versions_by_sha ON adapter_versions (sha256);
CREATE TABLE IF NOT EXISTS adapter_active (
    twin_id TEXT PRIMARY KEY, version INTEGER NOT NULL,
    FOREIGN KEY (twin_id, version) REFERENCES adapter_versions (twin_id, version)
) WITHOUT ROWID;
"""

_UPLOAD_COLUMNS = "upload_id, tenant, twin_id, version, size, sha256, manifest, received"
# Fixed wire reasons per verification failure; the detailed message (paths, tensor names) is logged.
_REASONS: dict[type[Exception], str] = {
    AdapterHashMismatch: "sha256 mismatch",
    AdapterBaseMismatch: "adapter is for a different base model",
    AdapterShapeError: "tensor names, rank or shapes do not fit the base model",
    AdapterNonFinite: "adapter holds NaN or infinite values",
    AdapterCorrupt: "artifact or manifest is not a valid adapter",
    AdapterError: "adapter failed verification",
}
_BUSY_RETRY_MS = 60_000  # a tenant over its unfinished-upload cap waits for one to finish or be pruned


@dataclass(frozen=True, slots=True)
class AdapterRef:
    """A committed version as stored: what the batcher keys residency on and what :meth:`load` reads."""

    twin_id: str
    version: int
    sha256: str
    path: Path
    manifest: AdapterManifest  # this version's own manifest (see the module docstring)

    @property
    def reads_state_worse(self) -> bool:
        """The device's round scored this version below the base model alone on the same held-out
        questions about the state in the prompt (``training.state_accuracy`` < ``state_accuracy_base``,
        ``edge.finetune.reading``). False when either score is missing (older rounds, no entities)."""
        own, base = (self.manifest.training.get(k) for k in ("state_accuracy", "state_accuracy_base"))
        scores = [v for v in (own, base) if isinstance(v, int | float) and not isinstance(v, bool)]
        return len(scores) == 2 and scores[0] < scores[1]


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: int
    sha256: str
    size: int
    created_ms: int
    active: bool
    training: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class _Upload:
    upload_id: bytes
    tenant: str
    twin_id: str
    version: int
    size: int
    sha256: str
    manifest: bytes
    received: int

    def status(self) -> UploadStatus:
        return UploadStatus(self.upload_id, self.received, False, self.version)


def create_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(SCHEMA)


class AdapterRegistry:
    """Uploads, versions and active pointers of adapters. Methods taking ``conn`` run on the DB thread
    (one at a time), so no two of them interleave their file and row updates."""

    def __init__(
        self, data_dir: Path, spec: ModelSpec, *, keep_versions: int, max_pending_uploads: int = 8
    ) -> None:
        if keep_versions < 1 or max_pending_uploads < 1:
            raise ModelError("keep_versions and max_pending_uploads must be >= 1")
        self.spec = spec
        self.keep_versions = keep_versions
        self.max_pending_uploads = max_pending_uploads
        self._uploads = data_dir / "uploads"
        self._store = data_dir / "adapters"
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._store.mkdir(parents=True, exist_ok=True)

    # ---- uploads ---------------------------------------------------------------------------------

    def begin(self, conn: sqlite3.Connection, tenant: str, msg: AdapterBegin, now_ms: int) -> UploadStatus:
        """Start or resume an upload. The caller has checked that ``tenant`` owns ``msg.twin_id``."""
        self._check_manifest(msg)
        done = self._committed(conn, msg.twin_id, msg.version, msg.sha256)
        if done is not None:
            return done
        row = conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM adapter_uploads "
            "WHERE tenant = ? AND twin_id = ? AND version = ? AND sha256 = ? AND size = ?",
            (tenant, msg.twin_id, msg.version, msg.sha256, msg.size),
        ).fetchone()
        if row is not None:  # resume; touching it keeps prune_uploads away while the device is back
            conn.execute("UPDATE adapter_uploads SET updated_ms = ? WHERE upload_id = ?", (now_ms, row[0]))
            return self._reconcile(conn, _Upload(*row)).status()
        pending = conn.execute("SELECT COUNT(*) FROM adapter_uploads WHERE tenant = ?", (tenant,)).fetchone()
        if pending[0] >= self.max_pending_uploads:
            raise RateLimited(
                f"more than {self.max_pending_uploads} unfinished adapter uploads",
                retry_after_ms=_BUSY_RETRY_MS,
            )
        upload_id = secrets.token_bytes(16)
        conn.execute(
            f"INSERT INTO adapter_uploads ({_UPLOAD_COLUMNS}, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (upload_id, tenant, msg.twin_id, msg.version, msg.size, msg.sha256, msg.manifest, now_ms),
        )
        return UploadStatus(upload_id, 0, False, msg.version)

    def chunk(self, conn: sqlite3.Connection, tenant: str, msg: AdapterChunk, now_ms: int) -> UploadStatus:
        """Append bytes at ``msg.offset``. Bytes below ``received`` are duplicates (a resend after a lost
        acknowledgement) and are skipped; a mismatch among them is caught by the hash at commit."""
        found = self._find(conn, tenant, msg.upload_id)
        if isinstance(found, UploadStatus):
            return found  # a late duplicate of a chunk of a committed upload
        end = msg.offset + len(msg.data)
        if end > found.size:
            raise TooLarge(f"chunk ends beyond the declared size of {found.size} B")
        up = self._reconcile(conn, found)
        if msg.offset > up.received:
            raise UploadGap(f"resend from {up.received}")
        if end > up.received:
            with open(self._staging(up.upload_id), "ab") as fh:
                fh.write(msg.data[up.received - msg.offset :])
                fh.flush()
                os.fsync(fh.fileno())
            up = replace(up, received=end)
        conn.execute(
            "UPDATE adapter_uploads SET received = ?, updated_ms = ? WHERE upload_id = ?",
            (up.received, now_ms, up.upload_id),
        )
        return up.status()

    def commit(self, conn: sqlite3.Connection, tenant: str, msg: AdapterCommit, now_ms: int) -> UploadStatus:
        """Verify, store and activate. A rejected upload is deleted: its bytes cannot become valid."""
        found = self._find(conn, tenant, msg.upload_id)
        if isinstance(found, UploadStatus):
            return found  # commit retried after it succeeded
        up = self._reconcile(conn, found)
        if up.received != up.size:
            raise UploadGap(f"resend from {up.received}")
        try:
            done = self._committed(conn, up.twin_id, up.version, up.sha256)
            if done is None:
                self._verify(up)
        except AdapterRejected:
            self._drop(conn, up)
            raise
        if done is not None:  # the same bytes were committed through another upload meanwhile
            self._drop(conn, up)
            return replace(done, upload_id=up.upload_id)
        self._move_to_store(up)
        with transaction(conn):
            conn.execute(
                "INSERT INTO adapter_versions (twin_id, version, sha256, size, manifest, tenant, upload_id, "
                "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (up.twin_id, up.version, up.sha256, up.size, up.manifest, up.tenant, up.upload_id, now_ms),
            )
            _set_active(conn, up.twin_id, up.version)
            conn.execute("DELETE FROM adapter_uploads WHERE upload_id = ?", (up.upload_id,))
            dropped = self._prune_versions(conn, up.twin_id)
        self._delete_unreferenced(conn, dropped)
        log.info("adapter %s v%d committed (%d B, sha256 %s)", up.twin_id, up.version, up.size, up.sha256)
        return UploadStatus(up.upload_id, up.size, True, up.version)

    def prune_uploads(self, conn: sqlite3.Connection, older_than_ms: int) -> int:
        """Delete unfinished uploads not touched since ``older_than_ms``; returns how many."""
        rows = conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM adapter_uploads WHERE updated_ms < ?", (older_than_ms,)
        ).fetchall()
        for row in rows:
            self._drop(conn, _Upload(*row))
        return len(rows)

    # ---- versions --------------------------------------------------------------------------------

    def active(self, conn: sqlite3.Connection, twin_id: str) -> AdapterRef | None:
        row = conn.execute(
            "SELECT v.version, v.sha256, v.manifest FROM adapter_active AS a JOIN adapter_versions AS v "
            "ON v.twin_id = a.twin_id AND v.version = a.version WHERE a.twin_id = ?",
            (twin_id,),
        ).fetchone()
        return None if row is None else self._ref(twin_id, int(row[0]), str(row[1]), bytes(row[2]))

    def versions(self, conn: sqlite3.Connection, twin_id: str) -> list[VersionInfo]:
        """Every held version of ``twin_id``, newest first."""
        rows = conn.execute(
            "SELECT v.version, v.sha256, v.size, v.created_ms, v.manifest, a.version IS NOT NULL "
            "FROM adapter_versions AS v LEFT JOIN adapter_active AS a "
            "ON a.twin_id = v.twin_id AND a.version = v.version WHERE v.twin_id = ? ORDER BY v.version DESC",
            (twin_id,),
        ).fetchall()
        return [
            VersionInfo(
                int(version),
                str(sha),
                int(size),
                int(created),
                bool(active),
                AdapterManifest.from_json(bytes(manifest), f"{twin_id} v{version}").training,
            )
            for version, sha, size, created, manifest, active in rows
        ]

    def rollback(self, conn: sqlite3.Connection, twin_id: str, to_version: int | None = None) -> AdapterRef:
        """Make an older (or any held) version active; None means the newest one below the active one."""
        current = self.active(conn, twin_id)
        if current is None:
            raise UnknownTwin(f"twin {twin_id} has no adapter")
        held = {
            int(version): (str(sha), bytes(manifest))
            for version, sha, manifest in conn.execute(
                "SELECT version, sha256, manifest FROM adapter_versions WHERE twin_id = ?", (twin_id,)
            )
        }
        if to_version is None:
            older = [v for v in held if v < current.version]
            if not older:
                raise SemanticError(f"twin {twin_id} holds no version before v{current.version}")
            to_version = max(older)
        elif to_version not in held:
            raise SemanticError(f"twin {twin_id} holds no v{to_version} (held: {sorted(held)})")
        _set_active(conn, twin_id, to_version)
        log.info("adapter %s rolled back from v%d to v%d", twin_id, current.version, to_version)
        return self._ref(twin_id, to_version, *held[to_version])

    def load(self, ref: AdapterRef) -> LoadedAdapter:
        """Read and verify a stored version. A file damaged on disk fails its hash (AdapterHashMismatch)
        or its parse (AdapterCorrupt); the caller answers 503 for it."""
        loaded = read_adapter(ref.path, self.spec)
        stored, own = loaded.manifest, ref.manifest
        if stored == own:
            return loaded
        # the artifact is shared with another version: its bytes were verified against ``own`` at
        # commit; the layout fields both manifests derive from those bytes must still agree
        if (stored.sha256, stored.rank, set(stored.target_modules), stored.dtype) != (
            own.sha256,
            own.rank,
            set(own.target_modules),
            own.dtype,
        ):
            raise AdapterCorrupt(f"{ref.path}: does not match the manifest of {ref.twin_id} v{ref.version}")
        return LoadedAdapter(own, loaded.tensors)

    # ---- helpers ---------------------------------------------------------------------------------

    def _check_manifest(self, msg: AdapterBegin) -> AdapterManifest:
        """Everything checkable before any byte arrives, so a doomed upload is refused up front."""
        try:
            manifest = AdapterManifest.from_json(msg.manifest, "manifest")
        except AdapterError as exc:
            log.info("adapter manifest for %s rejected: %s", msg.twin_id, exc)
            raise AdapterRejected("manifest is not a valid adapter manifest") from exc
        wrong = [
            name
            for name, same in (
                ("twin_id", manifest.twin_id == msg.twin_id),
                ("version", manifest.version == msg.version),
                ("sha256", manifest.sha256 == msg.sha256),
            )
            if not same
        ]
        if wrong:
            raise AdapterRejected(f"manifest {', '.join(wrong)} differ from the upload's")
        if manifest.base_fingerprint != self.spec.fingerprint:
            raise AdapterRejected("adapter is for a different base model")
        if manifest.rank > self.spec.max_rank:
            raise AdapterRejected(f"rank exceeds the base model's max_rank {self.spec.max_rank}")
        if not set(manifest.target_modules) <= set(self.spec.targets):
            raise AdapterRejected(f"target modules must be among {list(self.spec.target_modules)}")
        return manifest

    def _committed(
        self, conn: sqlite3.Connection, twin_id: str, version: int, sha256: str
    ) -> UploadStatus | None:
        """The status of an already committed (twin, version) with these bytes; None if it may be
        uploaded; AdapterRejected if the version is taken by other bytes or older than the newest."""
        row = conn.execute(
            "SELECT sha256, size, upload_id FROM adapter_versions WHERE twin_id = ? AND version = ?",
            (twin_id, version),
        ).fetchone()
        if row is not None:
            if row[0] != sha256:
                raise AdapterRejected("version already exists")
            return UploadStatus(bytes(row[2]), int(row[1]), True, version)
        latest = conn.execute(
            "SELECT MAX(version) FROM adapter_versions WHERE twin_id = ?", (twin_id,)
        ).fetchone()[0]
        if latest is not None and version < latest:
            raise AdapterRejected(f"version is older than the twin's latest v{latest}")
        return None

    def _find(self, conn: sqlite3.Connection, tenant: str, upload_id: bytes) -> _Upload | UploadStatus:
        """The tenant's unfinished upload, or the status of its committed one. Another tenant's id gets
        the same UnknownUpload as a never-issued one, so ids cannot be probed."""
        row = conn.execute(
            f"SELECT {_UPLOAD_COLUMNS} FROM adapter_uploads WHERE upload_id = ? AND tenant = ?",
            (upload_id, tenant),
        ).fetchone()
        if row is not None:
            return _Upload(*row)
        done = conn.execute(
            "SELECT version, size FROM adapter_versions WHERE upload_id = ? AND tenant = ?",
            (upload_id, tenant),
        ).fetchone()
        if done is not None:
            return UploadStatus(upload_id, int(done[1]), True, int(done[0]))
        raise UnknownUpload("no such upload")

    def _reconcile(self, conn: sqlite3.Connection, up: _Upload) -> _Upload:
        """Make ``received`` and the staging file agree after a crash (see the module docstring)."""
        path = self._staging(up.upload_id)
        try:
            on_disk = path.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        if on_disk > up.received:
            os.truncate(path, up.received)
        elif on_disk < up.received:
            log.warning(
                "upload %s: staging file holds %d of %d B; resuming from there",
                up.upload_id.hex(),
                on_disk,
                up.received,
            )
            conn.execute(
                "UPDATE adapter_uploads SET received = ? WHERE upload_id = ?", (on_disk, up.upload_id)
            )
            up = replace(up, received=on_disk)
        return up

    def _verify(self, up: _Upload) -> None:
        """Hash first (cheap, streamed), then the full check against the base model."""
        part = self._staging(up.upload_id)
        if _sha256_file(part) != up.sha256:
            raise AdapterRejected("sha256 mismatch")
        manifest_path(part).write_bytes(up.manifest)
        try:
            read_adapter(part, self.spec)
        except AdapterError as exc:
            log.info("adapter %s v%d rejected: %s", up.twin_id, up.version, exc)
            reason = next(_REASONS[cls] for cls in type(exc).__mro__ if cls in _REASONS)
            raise AdapterRejected(reason) from exc

    def _move_to_store(self, up: _Upload) -> None:
        """Artifact and manifest into content-addressed storage; an intact copy already there is reused."""
        part, dest = self._staging(up.upload_id), self._artifact(up.sha256)
        if dest.is_file() and manifest_path(dest).is_file() and _sha256_file(dest) == up.sha256:
            part.unlink()
            manifest_path(part).unlink(missing_ok=True)
            return
        dest.parent.mkdir(parents=True, exist_ok=True)
        _fsync(manifest_path(part))
        os.replace(manifest_path(part), manifest_path(dest))  # manifest first: the artifact marks completion
        os.replace(part, dest)
        _fsync(dest.parent)

    def _prune_versions(self, conn: sqlite3.Connection, twin_id: str) -> set[str]:
        """Delete version rows beyond the newest ``keep_versions`` (never the active one); returns their
        sha256s so their files can go once nothing references them."""
        rows = conn.execute(
            "SELECT version, sha256 FROM adapter_versions WHERE twin_id = ? AND version NOT IN "
            "(SELECT version FROM adapter_active WHERE twin_id = ?) ORDER BY version DESC",
            (twin_id, twin_id),
        ).fetchall()
        stale = rows[max(self.keep_versions - 1, 0) :]
        conn.executemany(
            "DELETE FROM adapter_versions WHERE twin_id = ? AND version = ?",
            [(twin_id, version) for version, _ in stale],
        )
        return {str(sha) for _, sha in stale}

    def _delete_unreferenced(self, conn: sqlite3.Connection, shas: set[str]) -> None:
        for sha in shas:
            if conn.execute("SELECT 1 FROM adapter_versions WHERE sha256 = ?", (sha,)).fetchone() is None:
                self._artifact(sha).unlink(missing_ok=True)
                manifest_path(self._artifact(sha)).unlink(missing_ok=True)

    def _drop(self, conn: sqlite3.Connection, up: _Upload) -> None:
        part = self._staging(up.upload_id)
        part.unlink(missing_ok=True)
        manifest_path(part).unlink(missing_ok=True)
        conn.execute("DELETE FROM adapter_uploads WHERE upload_id = ?", (up.upload_id,))

    def _ref(self, twin_id: str, version: int, sha256: str, manifest: bytes) -> AdapterRef:
        parsed = AdapterManifest.from_json(manifest, f"{twin_id} v{version} (registry)")
        return AdapterRef(twin_id, version, sha256, self._artifact(sha256), parsed)

    def _staging(self, upload_id: bytes) -> Path:
        return self._uploads / f"{upload_id.hex()}.part"

    def _artifact(self, sha256: str) -> Path:
        return self._store / sha256[:2] / f"{sha256}{ARTIFACT_SUFFIX}"


def _set_active(conn: sqlite3.Connection, twin_id: str, version: int) -> None:
    conn.execute(
        "INSERT INTO adapter_active (twin_id, version) VALUES (?, ?) "
        "ON CONFLICT (twin_id) DO UPDATE SET version = excluded.version",
        (twin_id, version),
    )


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
