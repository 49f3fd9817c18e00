"""The LLM-Twin error tree.

Every failure the system reports to a user or a peer is one of these classes. Low-level errors
(msgpack, lz4, tomllib, OSError, onnxruntime ...) are translated into them at one boundary with
``raise ... from``; nothing above that boundary catches library exceptions.

::

    TwinError
    ├── ConfigError                 a config file is missing, unreadable or invalid (file, key, value)
    ├── ScenarioError               a scenario or Home Assistant state object is invalid
    ├── ModelError                  model preparation, export, engine, adapters
    │   ├── ModelSourceError            base model missing / unsupported / not a causal LM
    │   ├── ExportError                 ONNX export failed or logits differ from PyTorch
    │   └── AdapterError                adapter artifact unusable
    │       ├── AdapterCorrupt, AdapterHashMismatch, AdapterBaseMismatch,
    │       └── AdapterShapeError, AdapterNonFinite
    └── WireError                   anything a peer sent or we answer on the wire; has a stable code
        ├── BadRequest        400   malformed or invalid request
        │   ├── FrameCountError           wrong number of frames
        │   ├── HeaderError               header not msgpack, too large, wrong schema
        │   ├── SchemaError               body does not match the message schema
        │   ├── SemanticError             schema-valid but outside semantic limits
        │   ├── AdapterRejected           uploaded adapter failed verification
        │   └── UploadGap                 chunk offset beyond the bytes received
        ├── Forbidden         403   authenticated tenant may not touch this resource
        ├── UnknownRequest    404   FETCH of a rid the gateway does not know
        │   ├── UnknownUpload, UnknownTwin
        ├── InFlight          409   duplicate rid whose first execution is still running
        ├── TooLarge          413   frame, header, body or declared size above a limit
        ├── Unsupported       415   signature, version, command or codec not supported
        │   ├── BadSignature, UnsupportedVersion, UnknownCommand, UnsupportedCodec
        ├── DecompressError   422   lz4 failed (corrupt, truncated, trailing data)
        │   ├── CompressionBomb           declared size / ratio above the limit
        │   └── SizeMismatch              output differs from the declared size
        ├── RateLimited       429   token bucket / queue / in-flight cap (retry_after_ms)
        ├── InternalError     500   our bug; never carries input bytes
        ├── AdapterUnavailable 503  the twin has no servable adapter right now
        │   └── AdapterSlotsBusy          every bank slot is in use (the batcher keeps the request queued)
        ├── StorageFull       503   the gateway's disk is full: nothing was stored, retry later
        └── DeadlineExceeded  504   the request's deadline passed before completion

Wire errors carry ``status`` (HTTP-like number) and ``code`` (a stable snake_case string, the
contract clients match on). ``detail`` is a short human message built only from our own limits
and field names: input bytes are never echoed back.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar


class TwinError(Exception):
    """Root of every error this package raises on purpose."""


# --------------------------------------------------------------------------------------------
# configuration


class ConfigError(TwinError):
    """A config file failed to load or validate. Names the file, the key path and the bad value."""

    def __init__(self, file: Path | str, key: str, value: object, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.value = value
        self.reason = reason
        where = f"{self.file}: {key}" if key else self.file
        shown = _short_repr(value)
        super().__init__(f"{where} = {shown}: {reason}" if key else f"{where}: {reason}")


class ScenarioError(TwinError):
    """A scenario definition or a Home Assistant state object is invalid."""


class ModelError(TwinError):
    """Model preparation, export, engine or adapter artifact failure."""


class ModelSourceError(ModelError):
    """A base model source is missing, unsupported (GGUF variant, architecture) or not a causal LM."""


class ExportError(ModelError):
    """ONNX export failed or its logits differ from PyTorch beyond the stated tolerance."""


class AdapterError(ModelError):
    """An adapter artifact or manifest cannot be used."""


class AdapterCorrupt(AdapterError):
    """The artifact or manifest is truncated, unparseable or missing tensors."""


class AdapterHashMismatch(AdapterError):
    """The artifact's sha256 differs from the manifest's."""


class AdapterBaseMismatch(AdapterError):
    """The adapter was trained for a different base model fingerprint."""


class AdapterShapeError(AdapterError):
    """Tensor shapes, rank or target modules do not fit the base model / engine limits."""


class AdapterNonFinite(AdapterError):
    """The adapter holds NaN or infinite values."""


# --------------------------------------------------------------------------------------------
# wire


class WireError(TwinError):
    """An error that has a stable representation on the wire."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "error"

    def __init__(self, detail: str = "", *, retry_after_ms: int = 0) -> None:
        self.detail = detail or self.code
        self.retry_after_ms = retry_after_ms
        self.rid: bytes | None = None  # set once the request's header was decoded
        super().__init__(f"{self.status} {self.code}: {self.detail}")


class BadRequest(WireError):
    status = 400
    code = "bad_request"


class FrameCountError(BadRequest):
    code = "frame_count"


class HeaderError(BadRequest):
    code = "bad_header"


class SchemaError(BadRequest):
    code = "bad_schema"


class SemanticError(BadRequest):
    code = "bad_value"


class AdapterRejected(BadRequest):
    """An uploaded adapter failed verification (hash, base, shapes, values, manifest)."""

    code = "adapter_rejected"


class UploadGap(BadRequest):
    """A chunk's offset is beyond the bytes received so far: resend from ``received``."""

    code = "upload_gap"


class Forbidden(WireError):
    status = 403
    code = "forbidden"


class UnknownRequest(WireError):
    status = 404
    code = "unknown_rid"


class UnknownUpload(UnknownRequest):
    code = "unknown_upload"


class UnknownTwin(UnknownRequest):
    code = "unknown_twin"


class InFlight(WireError):
    status = 409
    code = "in_flight"


class TooLarge(WireError):
    status = 413
    code = "too_large"


class Unsupported(WireError):
    status = 415
    code = "unsupported"


class BadSignature(Unsupported):
    code = "bad_signature"


class UnsupportedVersion(Unsupported):
    code = "unsupported_version"


class UnknownCommand(Unsupported):
    code = "unknown_command"


class UnsupportedCodec(Unsupported):
    code = "unsupported_codec"


class DecompressError(WireError):
    status = 422
    code = "decompress_failed"


class CompressionBomb(DecompressError):
    code = "ratio_exceeded"


class SizeMismatch(DecompressError):
    code = "ulen_mismatch"


class RateLimited(WireError):
    status = 429
    code = "rate_limited"


class InternalError(WireError):
    status = 500
    code = "internal"


class AdapterUnavailable(WireError):
    status = 503
    code = "adapter_unavailable"


class AdapterSlotsBusy(AdapterUnavailable):
    """Every adapter slot is referenced or pinned. Transient: the batcher requeues the request, so this
    is told apart from an adapter that cannot be loaded at all (which fails the request at once)."""

    code = "adapter_slots_busy"


class StorageFull(WireError):
    """The disk under the data dir is full (SQLite SQLITE_FULL, ENOSPC/EDQUOT on a file write). Nothing
    of the request was kept; the same rid may be retried once space frees (``retry_after_ms``)."""

    status = 503
    code = "storage_full"


class DeadlineExceeded(WireError):
    status = 504
    code = "deadline_exceeded"


def wire_error_classes() -> list[type[WireError]]:
    """Every concrete wire error class (for code tables and tests)."""
    seen: list[type[WireError]] = []
    stack: list[type[WireError]] = [WireError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def error_for_code(code: str) -> type[WireError]:
    """The class for a wire code (clients turn ERROR replies back into exceptions with this)."""
    for cls in wire_error_classes():
        if cls.code == code:
            return cls
    return WireError


def _short_repr(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
