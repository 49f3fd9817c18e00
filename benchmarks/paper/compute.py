"""Fig. 5-8 analogues: compute per DTN update at the edge and at the server, LLM-Twin vs FedAvg.

Edge (one entity's update)
    LLM-Twin  the home's real fine-tuning round (``HomeAdapter.round_s``: the ``edge.finetune.round``
              child, start-up, training, ONNX eval gate and export; its peak RSS).
    FedAvg    a local round = one epoch of full-weight training of the same model (AdamW over every
              parameter, the same tokenised questions, batch size and token cap): ``warmup + steps``
              steps timed in a fresh child (:mod:`benchmarks.paper.fl_local`), extrapolated by seconds
              per token to the epoch's tokens, plus the measured model load. Labelled ``extrapolated``.
    For a like-for-like step cost the LoRA round's own training loop is timed the same way
    (``lora_loop``: s/step and tokens/s of both loops on the same batches).

Server (n entities' updates)
    LLM-Twin  per entity what the gateway does on an upload: ``AdapterRegistry.begin/chunk/commit``
              (256 KiB chunks appended + fsynced, sha256, ``read_adapter`` verification, content-
              addressed store, SQLite) then, as the batcher does on the first request, ``Residency.acquire``
              with ``AdapterRegistry.load`` as the loader (``read_adapter`` again + ``AdapterBank.load``).
              The real artifacts of the adapters phase, cycled over n distinct twins.
    FedAvg    the weighted mean of n full fp32 weight sets (numpy, streamed tensor by tensor: the memory
              is one tensor per client plus the accumulator of that tensor). Each client's set is read
              (deserialised) from the prepared model's ``hf/*.safetensors``: the n sets are the same file
              read n times, which costs the same arithmetic as n distinct sets.

Overall time per update = edge + transfer of one update at ``link_mbps`` + server at n entities, with
the entities training and uploading in parallel, each on its own link.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from benchmarks.paper.fl_local import Mode, StepRequest, StepResult
from edge.uplink import CHUNK_BYTES
from gateway.engine.bank import AdapterBank
from gateway.registry import AdapterRef, AdapterRegistry, create_schema
from gateway.residency import AdapterKey, Residency
from shared.adapters import AdapterManifest, LoadedAdapter, manifest_path
from shared.db import connect
from shared.modelspec import HF_DIR, load_spec
from shared.protocol.messages import AdapterBegin, AdapterChunk, AdapterCommit

Array = npt.NDArray[Any]
REPO = Path(__file__).resolve().parents[2]


class AdapterRun(Protocol):
    """What compute needs of ``benchmarks.paper.adapters.HomeAdapter``."""

    @property
    def home(self) -> int: ...
    @property
    def twin_id(self) -> str: ...
    @property
    def artifact(self) -> Path: ...
    @property
    def round_s(self) -> float: ...
    @property
    def rounds(self) -> int: ...
    @property
    def steps(self) -> int: ...
    @property
    def peak_rss_mb(self) -> float: ...
    @property
    def peak_at(self) -> str: ...


# ------------------------------------------------------------------------------------------------
# pure parts


@dataclass(frozen=True, slots=True)
class Extrapolation:
    load_s: float
    step_s: float  # mean of the timed steps
    tokens_per_s: float
    steps_measured: int
    epoch_steps: int
    epoch_s: float  # load + epoch tokens at the measured tokens/s
    extrapolated: bool  # fewer steps measured than an epoch has

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}


def extrapolate(result: StepResult) -> Extrapolation:
    """One epoch's seconds from the timed steps: by tokens, since step widths vary with the bucketing."""
    if not result.step_s or sum(result.step_s) <= 0:
        raise ValueError("no timed steps to extrapolate from")
    tokens_per_s = sum(result.step_tokens) / sum(result.step_s)
    return Extrapolation(
        load_s=result.load_s,
        step_s=statistics.fmean(result.step_s),
        tokens_per_s=tokens_per_s,
        steps_measured=len(result.step_s),
        epoch_steps=result.epoch_steps,
        epoch_s=result.load_s + result.epoch_tokens / tokens_per_s,
        extrapolated=len(result.step_s) < result.epoch_steps,
    )


def fedavg_stream(sets: Sequence[Mapping[str, Array]], weights: Sequence[float]) -> Iterator[tuple[str, Array]]:
    """``(name, sum_i w_i * set_i[name] / sum_i w_i)`` for every tensor name of the first set, in float32,
    one tensor at a time (a client set may be lazy: each tensor is read when it is needed)."""
    if not sets or len(sets) != len(weights):
        raise ValueError("need one weight per client set, and at least one set")
    total = float(sum(weights))
    if total <= 0 or any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    for name in sets[0]:
        acc = np.asarray(sets[0][name], dtype=np.float32) * np.float32(weights[0] / total)
        for client, weight in zip(sets[1:], weights[1:], strict=True):
            acc += np.asarray(client[name], dtype=np.float32) * np.float32(weight / total)
        yield name, acc


def fedavg(sets: Sequence[Mapping[str, Array]], weights: Sequence[float]) -> dict[str, Array]:
    return dict(fedavg_stream(sets, weights))


@dataclass(frozen=True, slots=True)
class UpdateTime:
    edge_s: float
    transfer_s: float
    server_s: float
    bytes: int
    link_mbps: float

    @property
    def total_s(self) -> float:
        return self.edge_s + self.transfer_s + self.server_s

    def to_json(self) -> dict[str, Any]:
        return {
            "edge_s": round(self.edge_s, 3),
            "transfer_s": round(self.transfer_s, 3),
            "server_s": round(self.server_s, 3),
            "total_s": round(self.total_s, 3),
            "bytes": self.bytes,
            "link_mbps": self.link_mbps,
        }


def update_time(edge_s: float, nbytes: int, server_s: float, link_mbps: float) -> UpdateTime:
    """One DTN update: train, send ``nbytes`` at ``link_mbps`` (10^6 bit/s), process at the server."""
    if link_mbps <= 0:
        raise ValueError("link_mbps must be positive")
    return UpdateTime(edge_s, nbytes * 8 / (link_mbps * 1e6), server_s, nbytes, link_mbps)


# ------------------------------------------------------------------------------------------------
# edge


def run_steps(request: StepRequest, work: Path) -> StepResult:
    """``python -m benchmarks.paper.fl_local`` on ``request`` in a fresh child; its result."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"steps-{request.mode}.json"
    path.write_text(request.to_json(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.paper.fl_local", "--request", str(path)]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"{request.mode} training steps failed (exit {done.returncode}): {tail}")
    return StepResult.from_json(path.with_name(path.stem + ".result.json").read_text(encoding="utf-8"))


def edge_compute(
    model_dir: Path,
    adapter: AdapterRun,
    work: Path,
    *,
    seed: int,
    n_homes: int,
    warmup: int,
    steps: int,
    threads: int,
    state_share: float = 0.0,
    state_checks: int = 0,
) -> dict[str, Any]:
    """The LoRA round of ``adapter``'s home vs a FedAvg local round on the same home's data (its facts and,
    with ``state_share`` > 0, the round's state readings). With several rounds (``adapter.rounds``) an
    update is one of them: their mean seconds and steps."""
    loops: dict[Mode, Extrapolation] = {}
    results: dict[Mode, StepResult] = {}
    for mode in ("full", "lora"):
        print(f"  edge: {warmup} + {steps} {mode} training steps (home{adapter.home})", flush=True)
        request = StepRequest(
            mode, str(model_dir), adapter.home, seed, n_homes, warmup, steps, threads,
            state_share=state_share, state_checks=state_checks,
        )  # fmt: skip
        results[mode] = run_steps(request, work)
        loops[mode] = extrapolate(results[mode])
    fl, lora = loops["full"], loops["lora"]
    per_round_s, per_round_steps = adapter.round_s / adapter.rounds, adapter.steps / adapter.rounds
    return {
        "home": adapter.twin_id,
        "state_share": state_share,  # > 0: both sides trained on the round's state readings too
        "edge_s_llmtwin": round(per_round_s, 2),
        "edge_s_fl": round(fl.epoch_s, 2),
        "edge_s_fl_measured_steps": fl.steps_measured,
        "extrapolated": fl.extrapolated,
        "edge_s_fl_at_lora_steps": round(fl.load_s + fl.step_s * per_round_steps, 2),
        "edge_s_lora_loop_at_lora_steps": round(lora.load_s + lora.step_s * per_round_steps, 2),
        "lora_round": {
            "round_s": round(per_round_s, 2),
            "steps": round(per_round_steps),
            "rounds": adapter.rounds,
            "peak_rss_mb": adapter.peak_rss_mb,
            "peak_at": adapter.peak_at,
        },
        "fl_local": fl.to_json() | _step_facts(results["full"]),
        "lora_loop": lora.to_json() | _step_facts(results["lora"]),
        "step_ratio_fl_over_lora": round(fl.step_s / lora.step_s, 2),
        "peak_rss_mb_llmtwin": adapter.peak_rss_mb,
        "peak_rss_mb_fl": results["full"].peak_rss_mb,
    }


def _step_facts(result: StepResult) -> dict[str, Any]:
    return {
        "parameters_trained": result.parameters,
        "peak_rss_mb": result.peak_rss_mb,
        "epoch_tokens": result.epoch_tokens,
        "train_examples": result.train_examples,
        "batch_size": result.batch_size,
        "step_s_each": result.step_s,
    }


# ------------------------------------------------------------------------------------------------
# server


class SafetensorsSet(Mapping[str, Array]):
    """A weight set read lazily from safetensors files: each tensor deserialised when it is asked for."""

    def __init__(self, files: Sequence[Path]) -> None:
        from safetensors import safe_open

        self._files: list[Any] = [safe_open(str(p), framework="numpy") for p in files]
        self._where = {name: i for i, f in enumerate(self._files) for name in f.keys()}  # noqa: SIM118

    def __getitem__(self, name: str) -> Array:
        tensor: Array = self._files[self._where[name]].get_tensor(name)
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


def fedavg_seconds(files: Sequence[Path], n: int, weights: Sequence[float]) -> tuple[float, int]:
    """Seconds to FedAvg ``n`` client sets (each read from ``files``) and the parameters averaged."""
    start = time.perf_counter()
    sets = [SafetensorsSet(files) for _ in range(n)]
    params = sum(int(t.size) for _, t in fedavg_stream(sets, weights[:n]))
    return time.perf_counter() - start, params


def llmtwin_server_seconds(model_dir: Path, artifacts: Sequence[Path], n: int, work: Path) -> float:
    """Seconds for the gateway's update path over ``n`` entities: commit each upload, load it into the bank.
    ``work`` is emptied first (a registry left there would answer "already committed")."""
    shutil.rmtree(work, ignore_errors=True)
    spec = load_spec(model_dir)
    conn = connect(work / "registry.sqlite")
    create_schema(conn)
    registry = AdapterRegistry(work / "data", spec, keep_versions=2)
    residency = Residency(AdapterBank(spec, n + 1))
    blobs = [(p.read_bytes(), AdapterManifest.from_json(manifest_path(p).read_bytes(), str(p))) for p in artifacts]
    quiet = logging.getLogger("gateway.registry")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # one "committed" line per entity is noise here
    try:
        start = time.perf_counter()
        for i in range(n):
            data, manifest = blobs[i % len(blobs)]
            twin = f"entity{i + 1}"
            doc = dataclasses.replace(manifest, twin_id=twin, version=1).to_json().encode()
            status = registry.begin(conn, twin, AdapterBegin(twin, 1, len(data), manifest.sha256, doc), 0)
            for offset in range(0, len(data), CHUNK_BYTES):
                piece = data[offset : offset + CHUNK_BYTES]
                registry.chunk(conn, twin, AdapterChunk(status.upload_id, offset, piece), 0)
            registry.commit(conn, twin, AdapterCommit(status.upload_id), 0)
            ref = registry.active(conn, twin)
            assert ref is not None
            residency.release(residency.acquire(AdapterKey(twin, 1), _loader(registry, ref)))
        return time.perf_counter() - start
    finally:
        quiet.setLevel(level)
        conn.close()


def _loader(registry: AdapterRegistry, ref: AdapterRef) -> Callable[[], LoadedAdapter]:
    return lambda: registry.load(ref)


def server_compute(
    model_dir: Path, artifacts: Sequence[Path], counts: Iterable[int], work: Path, client_weights: Sequence[float]
) -> dict[str, Any]:
    """LLM-Twin and FedAvg server seconds for every n in ``counts``."""
    files = sorted((model_dir / HF_DIR).glob("*.safetensors"))
    ns = sorted(set(counts))
    weights = [client_weights[i % len(client_weights)] for i in range(max(ns))]
    llmtwin: dict[str, float] = {}
    fl: dict[str, float] = {}
    params = 0
    # warm-up, untimed: imports (onnxruntime for the bank), the weights file into the page cache
    llmtwin_server_seconds(model_dir, artifacts, 1, work / "server-warmup")
    fedavg_seconds(files, 1, weights)
    for n in ns:
        llmtwin[str(n)] = round(llmtwin_server_seconds(model_dir, artifacts, n, work / f"server-n{n}"), 4)
        seconds, params = fedavg_seconds(files, n, weights)
        fl[str(n)] = round(seconds, 4)
        print(f"  server n={n}: LLM-Twin {llmtwin[str(n)]:.3f} s, FedAvg {fl[str(n)]:.3f} s", flush=True)
    top = str(ns[-1])
    return {
        "n": ns,
        "server_s_llmtwin": llmtwin[top],
        "server_s_fl": fl[top],
        "server_s_llmtwin_per_n": llmtwin,
        "server_s_fl_per_n": fl,
        "fl_parameters_averaged": params,
        "fl_client_weights": weights,
        "adapter_artifacts": [str(p) for p in artifacts],
    }
