"""The adapter registry against a real SQLite file and real ``.onnx_adapter`` artifacts on disk."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from specs import tiny_spec

from gateway.registry import AdapterRef, AdapterRegistry, create_schema
from shared import errors
from shared.adapters import AdapterManifest, manifest_path, write_adapter
from shared.db import connect
from shared.modelspec import lora_a_name, lora_b_name
from shared.protocol.messages import AdapterBegin, AdapterChunk, AdapterCommit
from shared.protocol.results import UploadStatus

FINGERPRINT = "f" * 64
OTHER_BASE = "0" * 64
T1, T2 = "tenant-1", "tenant-2"
CHUNK = 200




SPEC = tiny_spec()


@dataclass(frozen=True)
class Artifact:
    """What a device sends: the artifact bytes and the manifest JSON beside them."""

    data: bytes
    manifest: bytes
    sha256: str
    twin_id: str
    version: int

    def begin(self) -> AdapterBegin:
        return AdapterBegin(self.twin_id, self.version, len(self.data), self.sha256, self.manifest)


def tensors(seed: int, *, rank: int = 2, d_in: int | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for layer in range(SPEC.n_layers):
        for module, (din, dout) in SPEC.targets.items():
            out[lora_a_name(layer, module)] = rng.standard_normal((d_in or din, rank), dtype=np.float32)
            out[lora_b_name(layer, module)] = rng.standard_normal((rank, dout), dtype=np.float32)
    return out


def make(tmp: Path, twin_id: str = "home-1", version: int = 1, *, seed: int = 0, alpha: float = 4.0,
         base: str = FINGERPRINT, d_in: int | None = None) -> Artifact:
    """A real artifact written by the same code the edge uses."""
    path = tmp / "src" / f"{twin_id}-{version}-{seed}-{alpha}-{base[:4]}-{d_in}.onnx_adapter"
    manifest = AdapterManifest(twin_id=twin_id, version=version, base_fingerprint=base, rank=2, alpha=alpha,
                               target_modules=("q_proj", "v_proj"), training={"steps": 10 * version})
    written = write_adapter(path, tensors(seed, d_in=d_in), manifest)
    return Artifact(path.read_bytes(), written.to_json().encode(), written.sha256, twin_id, version)


def make_nan(tmp: Path) -> Artifact:
    """write_adapter refuses NaN, so a hostile device exports with onnxruntime directly."""
    import onnxruntime as ort

    values = tensors(1)
    values[lora_b_name(0, "q_proj")][0, 0] = np.nan
    fmt = ort.AdapterFormat()
    fmt.set_adapter_version(1)
    fmt.set_model_version(1)
    fmt.set_parameters({k: ort.OrtValue.ortvalue_from_numpy(v) for k, v in values.items()})
    path = tmp / "nan.onnx_adapter"
    fmt.export_adapter(str(path))
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    manifest = AdapterManifest(twin_id="home-1", version=1, base_fingerprint=FINGERPRINT, rank=2, alpha=4.0,
                               target_modules=("q_proj", "v_proj"), sha256=sha, created="2026-01-01T00:00Z")
    return Artifact(data, manifest.to_json().encode(), sha, "home-1", 1)


def edit_manifest(art: Artifact, **fields: Any) -> Artifact:
    return replace(art, manifest=json.dumps(json.loads(art.manifest) | fields).encode())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(tmp_path / "gateway.sqlite")
    create_schema(conn)
    yield conn
    conn.close()


@pytest.fixture
def reg(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry(tmp_path / "data", SPEC, keep_versions=3)


def send(reg: AdapterRegistry, db: sqlite3.Connection, art: Artifact, status: UploadStatus,
         stop: int | None = None, tenant: str = T1) -> UploadStatus:
    """Send chunks from ``status.received`` up to ``stop`` (default: the end)."""
    end = len(art.data) if stop is None else stop
    while status.received < end:
        piece = art.data[status.received:min(status.received + CHUNK, end)]
        status = reg.chunk(db, tenant, AdapterChunk(status.upload_id, status.received, piece), 1000)
    return status


def upload(reg: AdapterRegistry, db: sqlite3.Connection, art: Artifact, tenant: str = T1) -> UploadStatus:
    status = send(reg, db, art, reg.begin(db, tenant, art.begin(), 1000), tenant=tenant)
    return reg.commit(db, tenant, AdapterCommit(status.upload_id), 2000)


def staged(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "data" / "uploads").iterdir())


# ------------------------------------------------------------------------------------------------
# the happy path, resume, duplicates


def test_upload_in_chunks_verifies_stores_and_activates(tmp_path: Path, reg: AdapterRegistry,
                                                        db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    assert len(art.data) > 3 * CHUNK  # several chunks
    status = reg.begin(db, T1, art.begin(), 1000)
    assert (len(status.upload_id), status.received, status.complete) == (16, 0, False)
    status = send(reg, db, art, status)
    assert status.received == len(art.data) and not status.complete
    assert reg.active(db, "home-1") is None  # nothing is served before commit

    done = reg.commit(db, T1, AdapterCommit(status.upload_id), 2000)

    assert done == UploadStatus(status.upload_id, len(art.data), True, 1)
    ref = reg.active(db, "home-1")
    assert ref is not None and (ref.version, ref.sha256) == (1, art.sha256)
    assert ref.path == tmp_path / "data" / "adapters" / art.sha256[:2] / f"{art.sha256}.onnx_adapter"
    assert ref.path.read_bytes() == art.data and manifest_path(ref.path).is_file()
    loaded = reg.load(ref)
    name = lora_a_name(1, "v_proj")
    np.testing.assert_array_equal(loaded.tensors[name], tensors(0)[name])
    assert staged(tmp_path) == []
    [info] = reg.versions(db, "home-1")
    assert (info.version, info.sha256, info.size) == (1, art.sha256, len(art.data))
    assert (info.created_ms, info.active) == (2000, True)
    assert info.training == {"steps": 10}


def test_restart_keeps_adapters_and_resumes_uploads(tmp_path: Path, db: sqlite3.Connection) -> None:
    first, second = make(tmp_path, version=1), make(tmp_path, version=2, seed=1)
    reg = AdapterRegistry(tmp_path / "data", SPEC, keep_versions=3)
    upload(reg, db, first)
    half = send(reg, db, second, reg.begin(db, T1, second.begin(), 1000), stop=len(second.data) // 2)
    db.close()

    conn = connect(tmp_path / "gateway.sqlite")  # "restart": new connection, new registry, same files
    create_schema(conn)
    again = AdapterRegistry(tmp_path / "data", SPEC, keep_versions=3)
    ref = again.active(conn, "home-1")
    assert ref is not None and ref.version == 1 and again.load(ref).manifest.version == 1
    resumed = again.begin(conn, T1, second.begin(), 3000)
    assert (resumed.upload_id, resumed.received) == (half.upload_id, half.received)
    status = send(again, conn, second, resumed)
    assert again.commit(conn, T1, AdapterCommit(status.upload_id), 4000).complete
    assert [v.version for v in again.versions(conn, "home-1")] == [2, 1]
    conn.close()


@pytest.mark.parametrize("extra", [b"", b"bytes written but never acknowledged"])
def test_resume_trusts_received_over_a_longer_staging_file(tmp_path: Path, reg: AdapterRegistry,
                                                           db: sqlite3.Connection, extra: bytes) -> None:
    art = make(tmp_path)
    status = send(reg, db, art, reg.begin(db, T1, art.begin(), 1000), stop=300)
    part = tmp_path / "data" / "uploads" / f"{status.upload_id.hex()}.part"
    with open(part, "ab") as fh:  # a crash between the fsynced append and the row update
        fh.write(extra)
    resumed = reg.begin(db, T1, art.begin(), 1000)
    assert resumed.received == 300 and part.stat().st_size == 300
    status = send(reg, db, art, resumed)
    assert reg.commit(db, T1, AdapterCommit(status.upload_id), 2000).complete


def test_resume_after_a_lost_staging_file_restarts_from_what_is_on_disk(tmp_path: Path, reg: AdapterRegistry,
                                                                        db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    status = send(reg, db, art, reg.begin(db, T1, art.begin(), 1000), stop=400)
    part = tmp_path / "data" / "uploads" / f"{status.upload_id.hex()}.part"
    with open(part, "r+b") as fh:
        fh.truncate(150)
    with pytest.raises(errors.UploadGap, match="resend from 150"):
        reg.chunk(db, T1, AdapterChunk(status.upload_id, 400, art.data[400:500]), 1000)
    assert reg.begin(db, T1, art.begin(), 1000).received == 150


def test_duplicate_and_overlapping_chunks_append_only_new_bytes(tmp_path: Path, reg: AdapterRegistry,
                                                                db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    uid = reg.begin(db, T1, art.begin(), 1000).upload_id
    assert reg.chunk(db, T1, AdapterChunk(uid, 0, art.data[:100]), 1000).received == 100
    assert reg.chunk(db, T1, AdapterChunk(uid, 0, art.data[:100]), 1000).received == 100  # resent
    assert reg.chunk(db, T1, AdapterChunk(uid, 50, art.data[50:250]), 1000).received == 250  # overlaps
    status = send(reg, db, art, UploadStatus(uid, 250))
    assert reg.commit(db, T1, AdapterCommit(uid), 2000).complete
    assert status.received == len(art.data)


def test_commit_and_chunks_retried_after_success_get_the_completed_status(
        tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    done = upload(reg, db, art)
    assert reg.commit(db, T1, AdapterCommit(done.upload_id), 3000) == done
    assert reg.chunk(db, T1, AdapterChunk(done.upload_id, 0, art.data[:10]), 3000) == done
    with pytest.raises(errors.UnknownUpload):  # still invisible to other tenants
        reg.commit(db, T2, AdapterCommit(done.upload_id), 3000)


# ------------------------------------------------------------------------------------------------
# refusals


def test_chunk_beyond_received_is_a_gap(tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    uid = reg.begin(db, T1, art.begin(), 1000).upload_id
    reg.chunk(db, T1, AdapterChunk(uid, 0, art.data[:100]), 1000)
    with pytest.raises(errors.UploadGap, match="resend from 100") as info:
        reg.chunk(db, T1, AdapterChunk(uid, 101, art.data[101:200]), 1000)
    assert info.value.code == "upload_gap"


def test_chunk_beyond_the_declared_size_is_too_large(tmp_path: Path, reg: AdapterRegistry,
                                                     db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    uid = reg.begin(db, T1, art.begin(), 1000).upload_id
    with pytest.raises(errors.TooLarge):
        reg.chunk(db, T1, AdapterChunk(uid, 0, art.data + b"x"), 1000)


def test_commit_before_all_bytes_arrived_is_a_gap(tmp_path: Path, reg: AdapterRegistry,
                                                  db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    status = send(reg, db, art, reg.begin(db, T1, art.begin(), 1000), stop=200)
    with pytest.raises(errors.UploadGap, match="resend from 200"):
        reg.commit(db, T1, AdapterCommit(status.upload_id), 2000)
    assert send(reg, db, art, status).received == len(art.data)  # the upload is still usable


def test_another_tenants_upload_id_looks_like_an_unknown_one(tmp_path: Path, reg: AdapterRegistry,
                                                             db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    uid = reg.begin(db, T1, art.begin(), 1000).upload_id
    answers = []
    for tenant, upload_id in ((T2, uid), (T1, bytes(16))):
        with pytest.raises(errors.UnknownUpload) as chunk_err:
            reg.chunk(db, tenant, AdapterChunk(upload_id, 0, art.data[:10]), 1000)
        with pytest.raises(errors.UnknownUpload) as commit_err:
            reg.commit(db, tenant, AdapterCommit(upload_id), 1000)
        answers.append((str(chunk_err.value), str(commit_err.value)))
    assert answers[0] == answers[1]


def test_wrong_bytes_fail_the_hash_and_the_upload_is_deleted(tmp_path: Path, reg: AdapterRegistry,
                                                             db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    forged = replace(art, data=art.data[:-1] + bytes([art.data[-1] ^ 1]))
    status = send(reg, db, forged, reg.begin(db, T1, forged.begin(), 1000))
    with pytest.raises(errors.AdapterRejected, match="sha256 mismatch"):
        reg.commit(db, T1, AdapterCommit(status.upload_id), 2000)
    assert staged(tmp_path) == [] and reg.active(db, "home-1") is None
    with pytest.raises(errors.UnknownUpload):
        reg.commit(db, T1, AdapterCommit(status.upload_id), 2000)


@pytest.mark.parametrize(("artifact", "reason"), [
    (make_nan, "NaN or infinite"),
    (lambda tmp: make(tmp, d_in=5), "shapes do not fit"),
])
def test_artifacts_failing_verification_are_rejected_and_deleted(tmp_path: Path, reg: AdapterRegistry,
                                                                 db: sqlite3.Connection, artifact: Any,
                                                                 reason: str) -> None:
    art = artifact(tmp_path)
    status = send(reg, db, art, reg.begin(db, T1, art.begin(), 1000))
    with pytest.raises(errors.AdapterRejected, match=reason) as info:
        reg.commit(db, T1, AdapterCommit(status.upload_id), 2000)
    assert str(tmp_path) not in info.value.detail  # no server paths on the wire
    assert staged(tmp_path) == [] and reg.active(db, "home-1") is None
    assert not list((tmp_path / "data" / "adapters").rglob("*.onnx_adapter"))


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda a: replace(a, manifest=b'{"not": "a manifest", "EVIL_KEY": 1}'), "not a valid adapter manifest"),
    (lambda a: replace(a, manifest=b"\xff\xfe"), "not a valid adapter manifest"),
    (lambda a: replace(a, twin_id="home-2"), "twin_id differ"),
    (lambda a: replace(a, version=2), "version differ"),
    (lambda a: replace(a, sha256="e" * 64), "sha256 differ"),
    (lambda a: edit_manifest(a, rank=8), "rank exceeds the base model's max_rank 4"),
    (lambda a: edit_manifest(a, target_modules=["q_proj", "EVIL_proj"]), "target modules must be among"),
])
def test_begin_rejects_a_manifest_that_does_not_match(tmp_path: Path, reg: AdapterRegistry,
                                                      db: sqlite3.Connection, edit: Any, reason: str) -> None:
    with pytest.raises(errors.AdapterRejected, match=reason) as info:
        reg.begin(db, T1, edit(make(tmp_path)).begin(), 1000)
    assert "EVIL" not in info.value.detail  # input is never echoed
    assert staged(tmp_path) == []


def test_begin_rejects_an_adapter_for_another_base_model(tmp_path: Path, reg: AdapterRegistry,
                                                         db: sqlite3.Connection) -> None:
    with pytest.raises(errors.AdapterRejected, match="adapter is for a different base model"):
        reg.begin(db, T1, make(tmp_path, base=OTHER_BASE).begin(), 1000)


def test_rebegin_of_a_committed_version(tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    v1, v3 = make(tmp_path, version=1), make(tmp_path, version=3)
    done = upload(reg, db, v1)
    assert reg.begin(db, T1, v1.begin(), 5000) == done  # same bytes: already complete
    with pytest.raises(errors.AdapterRejected, match="version already exists"):
        reg.begin(db, T1, make(tmp_path, version=1, seed=9).begin(), 5000)
    upload(reg, db, v3)
    with pytest.raises(errors.AdapterRejected, match="older than the twin's latest v3"):
        reg.begin(db, T1, make(tmp_path, version=2).begin(), 5000)  # versions only grow


def test_the_loser_of_two_uploads_of_one_version_gets_the_winners_outcome(
        tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    same, other = make(tmp_path), make(tmp_path, seed=4)  # e.g. a twin moved to another tenant mid-upload
    first = send(reg, db, same, reg.begin(db, T1, same.begin(), 1000), tenant=T1)
    second = send(reg, db, same, reg.begin(db, T2, same.begin(), 1000), tenant=T2)
    third = send(reg, db, other, reg.begin(db, T2, other.begin(), 1000), tenant=T2)
    assert reg.commit(db, T1, AdapterCommit(first.upload_id), 2000).complete
    assert reg.commit(db, T2, AdapterCommit(second.upload_id), 2000) == UploadStatus(
        second.upload_id, len(same.data), True, 1)
    with pytest.raises(errors.AdapterRejected, match="version already exists"):
        reg.commit(db, T2, AdapterCommit(third.upload_id), 2000)
    assert staged(tmp_path) == [] and len(reg.versions(db, "home-1")) == 1


def test_a_tenant_may_hold_only_a_few_unfinished_uploads(tmp_path: Path, db: sqlite3.Connection) -> None:
    reg = AdapterRegistry(tmp_path / "data", SPEC, keep_versions=3, max_pending_uploads=2)
    arts = [make(tmp_path, version=v) for v in (1, 2, 3)]
    reg.begin(db, T1, arts[0].begin(), 1000)
    reg.begin(db, T1, arts[1].begin(), 1000)
    assert reg.begin(db, T1, arts[0].begin(), 1000).received == 0  # resuming is always allowed
    with pytest.raises(errors.RateLimited):
        reg.begin(db, T1, arts[2].begin(), 1000)
    reg.begin(db, T2, arts[2].begin(), 1000)  # the cap is per tenant


def test_prune_uploads_drops_abandoned_staging_uploads(tmp_path: Path, reg: AdapterRegistry,
                                                       db: sqlite3.Connection) -> None:
    old, fresh = make(tmp_path, version=1), make(tmp_path, version=2)
    stale = send(reg, db, old, reg.begin(db, T1, old.begin(), 1000), stop=100)
    kept = reg.begin(db, T1, fresh.begin(), 1000).upload_id
    reg.chunk(db, T1, AdapterChunk(kept, 0, fresh.data[:50]), 9000)  # touched after the cutoff
    assert reg.prune_uploads(db, older_than_ms=5000) == 1
    assert staged(tmp_path) == [f"{kept.hex()}.part"]
    assert reg.begin(db, T1, fresh.begin(), 12_000) == UploadStatus(kept, 50, False, 2)
    assert reg.prune_uploads(db, older_than_ms=11_000) == 0  # a resumed upload counts as touched
    with pytest.raises(errors.UnknownUpload):
        reg.chunk(db, T1, AdapterChunk(stale.upload_id, 100, old.data[100:200]), 9000)


# ------------------------------------------------------------------------------------------------
# versions, rollback, retention, storage


def test_versions_and_rollback(tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    for version in (1, 2, 3):
        upload(reg, db, make(tmp_path, version=version, seed=version))
    assert [(v.version, v.active) for v in reg.versions(db, "home-1")] == [(3, True), (2, False), (1, False)]

    assert reg.rollback(db, "home-1").version == 2  # the one before the active one
    assert reg.rollback(db, "home-1").version == 1
    with pytest.raises(errors.SemanticError, match="no version before v1"):
        reg.rollback(db, "home-1")
    assert reg.rollback(db, "home-1", to_version=3).version == 3  # forward again, explicitly
    ref = reg.rollback(db, "home-1", to_version=2)
    assert ref == reg.active(db, "home-1") and reg.load(ref).manifest.version == 2
    with pytest.raises(errors.SemanticError, match="holds no v7"):
        reg.rollback(db, "home-1", to_version=7)
    with pytest.raises(errors.UnknownTwin):
        reg.rollback(db, "home-9")


def test_keep_versions_prunes_rows_and_unreferenced_files(tmp_path: Path, db: sqlite3.Connection) -> None:
    reg = AdapterRegistry(tmp_path / "data", SPEC, keep_versions=2)
    a1 = make(tmp_path, "home-a", 1, seed=5)
    b1 = make(tmp_path, "home-b", 1, seed=5, alpha=8.0)  # same tensors and version: the same artifact bytes
    assert a1.sha256 == b1.sha256 and a1.manifest != b1.manifest
    upload(reg, db, a1)
    upload(reg, db, b1)
    assert reg.load(_active(reg, db, "home-b")).manifest.alpha == 8.0  # its own manifest, not home-a's
    a2, a3, b2, b3 = (make(tmp_path, twin, v, seed=s) for twin, v, s in
                      (("home-a", 2, 20), ("home-a", 3, 30), ("home-b", 2, 21), ("home-b", 3, 31)))
    upload(reg, db, a2)
    upload(reg, db, a3)  # home-a keeps v3, v2; its v1 row goes, the file stays for home-b
    assert [v.version for v in reg.versions(db, "home-a")] == [3, 2]
    shared = _active(reg, db, "home-b").path
    assert shared.is_file()
    reg.rollback(db, "home-a", to_version=2)
    upload(reg, db, b2)
    upload(reg, db, b3)  # now nothing references the shared artifact
    assert not shared.exists() and not manifest_path(shared).exists()
    assert [v.version for v in reg.versions(db, "home-a")] == [3, 2]  # the active one is never pruned


def test_a_corrupted_stored_file_fails_its_hash_on_load(tmp_path: Path, reg: AdapterRegistry,
                                                        db: sqlite3.Connection) -> None:
    art = make(tmp_path)
    upload(reg, db, art)
    ref = _active(reg, db, "home-1")
    raw = tensors(0)[lora_b_name(1, "q_proj")].tobytes()
    data = ref.path.read_bytes()
    at = data.index(raw)  # flip a bit inside tensor data: the file still parses, the hash does not match
    ref.path.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:])
    with pytest.raises(errors.AdapterHashMismatch):
        reg.load(ref)
    reupload = make(tmp_path, version=2, seed=3)
    upload(reg, db, reupload)  # the registry keeps working for new versions


def test_a_damaged_stored_copy_is_replaced_when_the_same_bytes_arrive_again(
        tmp_path: Path, reg: AdapterRegistry, db: sqlite3.Connection) -> None:
    a1, b1 = make(tmp_path, "home-a", 1, seed=5), make(tmp_path, "home-b", 1, seed=5)
    upload(reg, db, a1)
    path = _active(reg, db, "home-a").path
    path.write_bytes(b"garbage")
    upload(reg, db, b1)
    assert path.read_bytes() == a1.data
    assert reg.load(_active(reg, db, "home-a")).manifest.twin_id == "home-a"


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.ModelError):
        AdapterRegistry(tmp_path, SPEC, keep_versions=0)


def _active(reg: AdapterRegistry, db: sqlite3.Connection, twin_id: str) -> AdapterRef:
    ref = reg.active(db, twin_id)
    assert ref is not None
    return ref


@pytest.mark.parametrize(
    ("training", "worse"),
    [
        ({"state_accuracy": 0.08, "state_accuracy_base": 0.54}, True),
        ({"state_accuracy": 0.54, "state_accuracy_base": 0.54}, False),  # level: the adapter keeps serving
        ({"state_accuracy": 0.58, "state_accuracy_base": 0.54}, False),
        ({"state_accuracy": 0, "state_accuracy_base": 1}, True),  # JSON may carry whole numbers
        ({"state_accuracy": None, "state_accuracy_base": 0.54}, False),  # a round without state questions
        ({"state_accuracy": 0.08}, False),
        ({"state_accuracy": "0.08", "state_accuracy_base": 0.54}, False),
        ({"steps": 10}, False),  # a manifest from before the state scores
        ({"state_accuracy": False, "state_accuracy_base": True}, False),  # not scores
    ],
)
def test_an_adapter_reads_state_worse_only_by_both_of_its_rounds_scores(
    training: dict[str, Any], worse: bool, tmp_path: Path
) -> None:
    manifest = AdapterManifest("home1", 1, FINGERPRINT, 2, 4.0, ("q_proj",), training=training)
    assert AdapterRef("home1", 1, "0" * 64, tmp_path, manifest).reads_state_worse is worse
