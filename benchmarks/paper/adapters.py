"""Per-home adapters for ``llmtwin bench paper``, trained by the real edge pipeline and kept for reruns.

Every home's adapter comes from ``python -m edge.finetune.round --request F`` child processes, exactly
as the daemon runs a round (``benchmarks.finetune.run_child``), on the home's static records from
``shared.scenario.generate(seed, n_homes)``. The eval gate's threshold is 0, so a cold round's adapter is always
exported (the privacy part measures its accuracy itself). ``rounds`` > 1 chains rounds the way
λ-periodic rounds do: each warm-starts from, and is scored against, the adapter in service. A round whose
candidate scores below that one is rejected, as on the daemon: the adapter in service stays (counted in
``rejected``), and the next round continues from the candidate when it scored within the eval's noise of
the one in service (``edge.finetune.resume``, counted in ``resumed``).

Work directory layout (one folder per home, resumable)::

    <work>/home<N>/request<k>.json, request<k>.result.json     the child's request and result
    <work>/home<N>/adapters/v<k>/adapter.onnx_adapter (+ manifest)
    <work>/home<N>/adapters/candidates/v<k>/...                 a rejected round's candidate (a resume point)
    <work>/home<N>/done.json                                    written last, atomically

A home whose ``done.json`` matches this run's settings (base fingerprint, seed, homes, rounds, budget,
threads, recipe) and whose artifact still reads is reused; anything else in its folder (a round
killed half-way, other settings, an artifact of an older format) is removed and the home retrained.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from benchmarks.finetune import home_records, prepared_model, run_child
from benchmarks.paper.config import effective_recipe
from edge.finetune.memory import peak_phase
from edge.finetune.resume import Candidate, resume_point
from edge.finetune.round import RoundRequest
from shared.adapters import manifest_path, read_adapter
from shared.errors import AdapterError
from shared.modelspec import ModelSpec, default_cache_dir, load_spec

DONE = "done.json"
_DONE_VERSION = 2  # 2: rounds resume from a rejected candidate within the eval's noise


@dataclass(frozen=True)
class HomeAdapter:
    home: int  # 1-based home index in shared.scenario.generate(seed, homes)
    twin_id: str
    artifact: Path  # the accepted/exported .onnx_adapter (manifest beside it)
    round_s: float  # wall seconds of the child round(s) that produced it (sum if several rounds)
    rounds: int
    steps: int
    peak_rss_mb: float
    records: int  # static records in
    facts: int
    rejected: int = 0  # rounds whose candidate scored below the adapter in service (which stayed)
    resumed: int = 0  # rounds that continued from a rejected candidate instead of the adapter in service
    peak_at: str = ""  # where peak_rss_mb was reached: "round <k>, <phase>" (edge.finetune.memory)


class AdapterTrainingError(RuntimeError):
    """A home's round did not produce an adapter (the child's status and reason are in the message)."""


def train_home_adapters(
    work: Path,
    base: str,
    cache_dir: Path | None,
    homes: Sequence[int],
    *,
    seed: int = 7,
    n_homes: int = 3,
    max_time_s: float = 300.0,
    rounds: int = 1,
    threads: int = 2,
    recipe: Mapping[str, Any] | None = None,
) -> list[HomeAdapter]:
    """One adapter per home in ``homes`` (trained, or reused from ``work``), in the order given.

    ``recipe`` overrides RoundRequest fields (lr, max_steps, eval_limit ...), as ``bench finetune --recipe``.
    Raises ValueError for a home outside 1..n_homes or an unknown recipe field, AdapterTrainingError
    when a round does not export an adapter.
    """
    recipe = dict(recipe or {})
    unknown = sorted(set(recipe) - {f.name for f in fields(RoundRequest)})
    if unknown:
        raise ValueError(f"recipe: unknown RoundRequest fields {unknown}")
    bad = [h for h in homes if not 1 <= h <= n_homes]
    if bad or rounds < 1:
        raise ValueError(f"homes must lie in 1..{n_homes} (got {bad}) and rounds >= 1 (got {rounds})")
    model_dir = prepared_model(base, cache_dir or default_cache_dir(os.environ))
    spec = load_spec(model_dir)
    work = work.resolve()  # the child runs in the repository root
    out: list[HomeAdapter] = []
    for home in homes:
        key = {
            "version": _DONE_VERSION,
            "base": base,
            "fingerprint": spec.fingerprint,
            "seed": seed,
            "n_homes": n_homes,
            "home": home,
            "rounds": rounds,
            "max_time_s": max_time_s,
            "threads": threads,
            "recipe": effective_recipe(recipe),
        }
        folder = work / f"home{home}"
        done = _reuse(folder, key, spec)
        if done is not None:
            print(f"home{home}: adapter reused from {done.artifact}", flush=True)
        else:
            done = _train(folder, key, model_dir, recipe)
        out.append(done)
    return out


def _reuse(folder: Path, key: Mapping[str, Any], spec: ModelSpec) -> HomeAdapter | None:
    """The finished home in ``folder`` when it was made with ``key`` and its artifact reads; else None."""
    try:
        doc = json.loads((folder / DONE).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("key") != json.loads(json.dumps(key)):
            return None
        adapter = HomeAdapter(**{**doc["adapter"], "artifact": folder / doc["adapter"]["artifact"]})
        read_adapter(adapter.artifact, spec)  # an artifact of an older format, or damaged: retrain
    except (OSError, ValueError, TypeError, KeyError, AdapterError):
        return None
    return adapter


def _train(folder: Path, key: Mapping[str, Any], model_dir: Path, recipe: Mapping[str, Any]) -> HomeAdapter:
    """Clean ``folder``, run the rounds, write ``done.json`` last."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    home = int(key["home"])
    records = home_records(int(key["seed"]), int(key["n_homes"]), home)
    current: str | None = None  # the adapter in service
    served_round, served_accuracy = 0, 0.0  # its round number and held-out accuracy
    rejected: list[Candidate] = []  # candidates the gate refused since it went into service
    results: list[dict[str, Any]] = []
    for number in range(1, int(key["rounds"]) + 1):
        n = int(results[-1]["eval_examples"]) if results else 1
        resume = resume_point(rejected, served_round, served_accuracy, n)
        request = RoundRequest(
            twin_id=f"home{home}",
            version=number,
            model_dir=str(model_dir),
            out_dir=str(folder / "adapters"),
            records=records,
            current_adapter=current,
            resume_adapter=resume,
            threads=int(key["threads"]),
            max_time_s=float(key["max_time_s"]),
            eval_threshold=0.0,
            seed=int(key["seed"]),
            **recipe,
        )
        start = f", continuing from the candidate {Path(resume).parent.name}" if resume else ""
        print(f"home{home}: round {number}/{key['rounds']} ({len(records)} records{start})", flush=True)
        try:
            child = run_child(request, folder, number)
        except (OSError, ValueError) as exc:  # the child died before writing its result (killed, crashed)
            raise AdapterTrainingError(f"home{home} round {number}: no result from the round: {exc}") from exc
        result = child["result"]
        results.append({**result, "wall_s": child["wall_s"], "resumed": resume is not None})
        if result["status"] == "accepted" and result["adapter_path"]:
            current, served_round, served_accuracy = result["adapter_path"], number, float(result["accuracy"])
            rejected = []
        elif result["status"] == "rejected" and current is not None and result["checkpoint_path"]:
            # worse than the adapter in service, which stays, as on the daemon; the next round continues from
            # this candidate when it is within the eval's noise of that one (edge.finetune.resume)
            versus = None if result.get("current_accuracy") is None else float(result["current_accuracy"])
            rejected.append(Candidate(number, float(result["accuracy"]), result["checkpoint_path"], versus))
        else:
            raise AdapterTrainingError(f"home{home} round {number}: {result['status']}: {result['reason']}")
    assert current is not None  # rounds >= 1, and the first one was accepted
    artifact = Path(current)
    adapter = HomeAdapter(
        home=home,
        twin_id=f"home{home}",
        artifact=artifact,
        round_s=round(sum(r["wall_s"] for r in results), 2),
        rounds=len(results),
        steps=sum(int(r["steps"]) for r in results),
        peak_rss_mb=max(float(r["peak_rss_mb"]) for r in results),
        peak_at=_peak_at(results),
        records=int(results[-1]["records"]),
        facts=int(results[-1]["facts"]),
        rejected=sum(r["status"] == "rejected" for r in results),
        resumed=sum(r["resumed"] for r in results),
    )
    if not manifest_path(artifact).is_file():
        raise AdapterTrainingError(f"home{home}: {artifact} has no manifest beside it")
    plain = {**asdict(adapter), "artifact": str(artifact.relative_to(folder))}
    _write_atomic(folder / DONE, json.dumps({"key": key, "adapter": plain}, indent=2) + "\n")
    return adapter


def _peak_at(results: Sequence[Mapping[str, Any]]) -> str:
    """"round <k>, <phase>" of the largest peak RSS among the rounds (the phase when the round reported it)."""
    number, worst = max(enumerate(results, 1), key=lambda nr: float(nr[1]["peak_rss_mb"]))
    phase = peak_phase(worst.get("peak_rss_by_phase") or {})
    return f"round {number}, {phase}" if phase else f"round {number}"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
