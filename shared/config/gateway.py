"""Gateway configuration (``gateway.toml``). Relative paths resolve against the file's folder."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from shared.config.edge import ZMQ_ENDPOINT, AdminSection, LogSection, Seconds
from shared.protocol.limits import Limits
from shared.protocol.messages import TWIN_ID_RE
from shared.typed import FieldError, Length, Pattern, Range


@dataclass(frozen=True, slots=True)
class ServerSection:
    bind: Annotated[str, Length(1, 256), Pattern(ZMQ_ENDPOINT)]
    server_secret_key: Path  # zmq.auth secret certificate of the gateway (mode 0600)
    tenants_dir: Path  # one public certificate per tenant; the file stem is the tenant id
    zap_domain: Annotated[str, Length(1, 64)] = "llmtwin"
    sndhwm: Annotated[int, Range(1, 1_000_000)] = 1000
    rcvhwm: Annotated[int, Range(1, 1_000_000)] = 1000
    drain_timeout_s: Seconds = 10.0


@dataclass(frozen=True, slots=True)
class ModelSection:
    base: Annotated[str, Length(1, 4096)] = "smollm2-135m"  # smollm2-135m | tiny | a model directory
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/llmtwin
    threads: Annotated[int, Range(1, 256)] = 2
    max_rank: Annotated[int, Range(1, 256)] = 16
    bank_slots: Annotated[int, Range(2, 100_000)] = 64
    bank_dtype: Literal["float32", "float16"] = "float32"
    max_context_tokens: Annotated[int, Range(64, 32768)] = 2048  # prompt + new tokens per request


@dataclass(frozen=True, slots=True)
class BatchingSection:
    max_batch: Annotated[int, Range(1, 1024)] = 16
    max_wait_ms: Annotated[float, Range(0, 10_000)] = 10.0


@dataclass(frozen=True, slots=True)
class AdmissionSection:
    max_inflight_per_tenant: Annotated[int, Range(1, 10_000)] = 4
    rate_per_s: Annotated[float, Range(0.001, 1e6)] = 5.0
    burst: Annotated[int, Range(1, 1_000_000)] = 20
    queue_cap: Annotated[int, Range(1, 1_000_000)] = 64
    idempotency_ttl_s: Seconds = 86400.0


@dataclass(frozen=True, slots=True)
class StorageSection:
    data_dir: Path  # adapter store, upload staging, prompt database
    prompt_retention_h: Annotated[float, Range(1, 24 * 3650)] = 168.0
    adapter_versions_kept: Annotated[int, Range(1, 1000)] = 5
    resident_budget_mb: Annotated[int, Range(1, 1 << 20)] = 512


TwinList = Annotated[tuple[Annotated[str, Length(1, 64), Pattern(TWIN_ID_RE)], ...], Length(1, 100_000)]


@dataclass(frozen=True, slots=True)
class SharingSection:
    """Who is in which circle. Owners choose per prompt whether to share; the operator draws circles."""

    groups: Annotated[dict[str, TwinList], Length(0, 100_000)] = field(default_factory=dict)
    regions: Annotated[dict[str, TwinList], Length(0, 10_000)] = field(default_factory=dict)
    pinned: Annotated[tuple[Annotated[str, Pattern(TWIN_ID_RE)], ...], Length(0, 1024)] = ()

    def validate(self) -> None:
        for name, table in (("groups", self.groups), ("regions", self.regions)):
            seen: dict[str, str] = {}
            for circle, twins in table.items():
                for twin in twins:
                    if twin in seen:
                        raise FieldError(f"{name}.{circle}", twin, f"twin is already in {name}.{seen[twin]}")
                    seen[twin] = circle


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    server: ServerSection
    storage: StorageSection
    model: ModelSection = ModelSection()
    batching: BatchingSection = BatchingSection()
    admission: AdmissionSection = AdmissionSection()
    sharing: SharingSection = field(default_factory=SharingSection)
    limits: Limits = field(default_factory=Limits)
    admin: AdminSection = field(default_factory=lambda: AdminSection(port=8766))
    log: LogSection = field(default_factory=LogSection)

    def validate(self) -> None:
        if self.admission.queue_cap < self.admission.max_inflight_per_tenant:
            raise FieldError(
                "admission.queue_cap",
                self.admission.queue_cap,
                "must be >= admission.max_inflight_per_tenant",
            )
