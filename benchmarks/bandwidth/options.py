"""What ``llmtwin bench bandwidth`` measures with: its settings, constants and model (``benchmarks.bandwidth``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.finetune import prepared_model
from shared.config.edge import FinetuneSection
from shared.modelspec import HF_DIR, find_prepared

DAY_S = 86400.0
ACK_BYTES = 8
ADAPTER_RANK = 8
ADAPTER_DTYPE = FinetuneSection().adapter_dtype  # what an edge daemon ships by default
HANDSHAKE_TIMEOUT_S = 30.0
REPLY_TIMEOUT_S = 120.0
PARTS = ("handshake", "hello", "state", "adapter")


@dataclass(frozen=True, slots=True)
class BandwidthBench:
    hours: float = 24.0
    tick_s: float = 10.0
    fl_rounds: int = 1  # K: FL rounds per day (the same cadence as one adapter per λ = 24 h)
    lambda_h: float = 24.0
    base: str = "smollm2-135m"
    cache_dir: Path | None = None
    seed: int = 7
    homes: int = 3
    fl_chunk_bytes: int = 1 << 20
    sample_every: int = 1  # fidelity sampled at every n-th tick

    def check(self) -> None:
        if not (0 < self.hours <= 24 and self.tick_s > 0 and self.lambda_h > 0 and self.fl_rounds >= 1):
            raise ValueError("need 0 < hours <= 24, tick_s > 0, lambda_h > 0 and fl_rounds >= 1")


@dataclass(frozen=True, slots=True)
class Model:
    name: str
    path: Path
    fallback: bool  # the requested base was not prepared: the tiny model stands in

    def weights(self) -> list[Path]:
        return sorted((self.path / HF_DIR).glob("*.safetensors"))


def resolve_model(base: str, cache: Path) -> Model:
    """The prepared ``base``; if it is not prepared, the tiny model (prepared here if needed)."""
    if find_prepared(cache, base) is not None:
        return Model(base, prepared_model(base, cache), fallback=False)  # re-prepared if its graph is stale
    return Model("tiny", prepared_model("tiny", cache), fallback=base != "tiny")
