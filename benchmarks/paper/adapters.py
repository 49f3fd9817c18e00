"""Per-home adapters for ``llmtwin bench paper``, trained by the real edge pipeline and kept for reruns.

Every home's adapter comes from ``python -m edge.finetune.round --request F`` child processes, exactly
as the daemon runs a round (``benchmarks.finetune.run_child``), on the home's static records from
``shared.scenario.generate(seed, n_homes)``. The eval gate's threshold is 0, so a cold round's adapter is always
exported (the privacy part measures its accuracy itself). ``rounds`` > 1 chains rounds the way
λ-periodic rounds do: each warm-starts from, and is scored against, the adapter in service. A round whose
candidate scores below that one is rejected, as on the daemon: the adapter in service stays (counted in
``rejected``), and the next round continues from the candidate when it scored within the eval's noise of
the one in service (``edge.finetune.resume``, counted in ``resumed``).

Work directory layout (one folder per home, resumable round by round)::

    <work>/home<N>/lineage.json                                 the settings other than ``rounds``
    <work>/home<N>/request<k>.json, request<k>.result.json     the child's request and result
    <work>/home<N>/round<k>.json                                request, result and wall time, after the child
    <work>/home<N>/adapters/v<k>/adapter.onnx_adapter (+ manifest)
    <work>/home<N>/adapters/candidates/v<k>/...                 a rejected round's candidate (a resume point)
    <work>/home<N>/done.json                                    written last, atomically

A home whose ``done.json`` matches this run's settings (base fingerprint, seed, homes, rounds, budget,
threads, recipe) and whose artifact still reads is reused. Otherwise, when the folder was made with the
same settings but ``rounds`` (a run killed between rounds, or one asking for more rounds), each round
whose record holds the very request this run would send is replayed from it and the rest are run: a
paper run with ``--rounds 10`` continues a finished seven-round one. A round killed half-way is run
again; a folder made with other settings is removed and the home retrained, and so is one whose
replayed rounds leave nothing to go on from that still reads (``--rounds 7`` after ten rounds: the
versions pruned by ``keep_versions`` include round 7's). The request does not name the version of the
edge's training code: to retrain after changing it, delete ``<work>/adapters``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from benchmarks.finetune import home_records, prepared_model, run_child
from benchmarks.paper.config import bench_pseudonyms, effective_recipe
from edge.finetune.memory import peak_phase
from edge.finetune.resume import Candidate, resume_point
from edge.finetune.round import RoundRequest
from edge.readings import StaticRecord
from shared.adapters import manifest_path, read_adapter
from shared.errors import AdapterError
from shared.files import atomic_write_bytes
from shared.modelspec import ModelSpec, default_cache_dir, load_spec
from shared.typed import FieldError

DONE = "done.json"
LINEAGE = "lineage.json"  # the settings other than rounds, written when the folder is (re)started
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
    pseudonyms: bool = False,
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
        } | ({"pseudonyms": True, "fact_names": True} if pseudonyms else {})  # facts under fact names (79531e6)
        folder = work / f"home{home}"
        done = _reuse(folder, key, spec)
        if done is not None:
            print(f"home{home}: adapter reused from {done.artifact}", flush=True)
        else:
            done = _train(folder, key, model_dir, spec, recipe)
        out.append(done)
    return out


def _reuse(folder: Path, key: Mapping[str, Any], spec: ModelSpec) -> HomeAdapter | None:
    """The finished home in ``folder`` when it was made with ``key`` and its artifact reads; else None."""
    try:
        doc = json.loads((folder / DONE).read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("key") != json.loads(json.dumps(key)):
            return None
        adapter = HomeAdapter(**{**doc["adapter"], "artifact": folder / doc["adapter"]["artifact"]})
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return adapter if _reads(adapter.artifact, spec) else None  # an older format, or damaged: retrain


def _train(
    folder: Path, key: Mapping[str, Any], model_dir: Path, spec: ModelSpec, recipe: Mapping[str, Any]
) -> HomeAdapter:
    """Run the home's rounds after those an earlier run finished with the same requests; ``done.json`` last."""
    lineage = json.loads(json.dumps({k: v for k, v in key.items() if k != "rounds"}))
    if _lineage(folder) != lineage:
        _start_over(folder, lineage)
    elif not (folder / LINEAGE).is_file():  # a folder from before lineage files: its done.json said so
        _write_json(folder / LINEAGE, lineage)
    (folder / DONE).unlink(missing_ok=True)  # made with fewer rounds, or half-written
    home, rounds = int(key["home"]), int(key["rounds"])
    records = home_records(int(key["seed"]), int(key["n_homes"]), home)
    state_ids: tuple[str, ...] = ()
    if key.get("pseudonyms"):  # as the daemon sends them with `finetune.pseudonyms` (edge.trainer)
        ids = [r.entity_id for r in records]
        table = bench_pseudonyms(int(key["seed"]), f"home{home}", ids)
        records, state_ids = tuple(table.records(records)), table.state_ids(ids)
    service = _Service(folder, key, model_dir, records, recipe, state_ids)
    if not service.replay(spec):
        print(f"home{home}: what the earlier rounds left no longer reads, so the home starts over", flush=True)
        _start_over(folder, lineage)
        service = _Service(folder, key, model_dir, records, recipe, state_ids)
    for number in range(len(service.results) + 1, rounds + 1):
        request = service.request(number)
        resume = request.resume_adapter
        start = f", continuing from the candidate {Path(resume).parent.name}" if resume else ""
        print(f"home{home}: round {number}/{rounds} ({len(records)} records{start})", flush=True)
        try:
            child = run_child(request, folder, number)
        except (OSError, ValueError) as exc:  # the child died before writing its result (killed, crashed)
            raise AdapterTrainingError(f"home{home} round {number}: no result from the round: {exc}") from exc
        record = {"request": json.loads(request.to_json()), "result": child["result"], "wall_s": child["wall_s"]}
        service.take(number, record, request)
        _write_json(folder / f"round{number}.json", record)
    return _finish(folder, key, service.results, service.current)


@dataclass
class _Service:
    """What the daemon keeps between a home's rounds: the adapter in service, the candidates the gate
    refused since it went into service (resume points), and every round's result."""

    folder: Path
    key: Mapping[str, Any]
    model_dir: Path
    records: tuple[StaticRecord, ...]
    recipe: Mapping[str, Any]
    state_ids: tuple[str, ...] = ()  # under pseudonyms: the state names the readings draw on
    current: str | None = None
    served_round: int = 0
    served_accuracy: float = 0.0
    rejected: list[Candidate] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)

    def request(self, number: int) -> RoundRequest:
        n = int(self.results[-1]["eval_examples"]) if self.results else 1
        return RoundRequest(
            twin_id=f"home{self.key['home']}",
            version=number,
            model_dir=str(self.model_dir),
            out_dir=str(self.folder / "adapters"),
            records=self.records,
            state_ids=self.state_ids,
            current_adapter=self.current,
            resume_adapter=resume_point(self.rejected, self.served_round, self.served_accuracy, n),
            threads=int(self.key["threads"]),
            max_time_s=float(self.key["max_time_s"]),
            eval_threshold=0.0,
            seed=int(self.key["seed"]),
            **self.recipe,
        )

    def take(self, number: int, record: Mapping[str, Any], request: RoundRequest) -> None:
        """The gate's decision on round ``number``; AdapterTrainingError when it exported nothing usable."""
        result = record["result"]
        if result["status"] == "accepted" and result["adapter_path"]:
            self.current, self.served_round = result["adapter_path"], number
            self.served_accuracy = float(result["accuracy"])
            self.rejected = []
        elif result["status"] == "rejected" and self.current is not None and result["checkpoint_path"]:
            # worse than the adapter in service, which stays, as on the daemon; the next round continues from
            # this candidate when it is within the eval's noise of that one (edge.finetune.resume)
            versus = None if result.get("current_accuracy") is None else float(result["current_accuracy"])
            self.rejected.append(Candidate(number, float(result["accuracy"]), result["checkpoint_path"], versus))
        else:
            raise AdapterTrainingError(f"{request.twin_id} round {number}: {result['status']}: {result['reason']}")
        self.results.append({**result, "wall_s": record["wall_s"], "resumed": request.resume_adapter is not None})

    def replay(self, spec: ModelSpec) -> bool:
        """Take the rounds an earlier run finished with the very requests this run sends (forgetting the
        files of the next rounds when there are rounds left to run: they came from another history). False
        when what the next round would start from (or, all rounds replayed, the adapter in service) no
        longer reads."""
        rounds = int(self.key["rounds"])
        for number in range(1, rounds + 1):
            request = self.request(number)
            earlier = _earlier_round(self.folder, number, request)
            if earlier is None:
                break
            try:
                self.take(number, earlier, request)
            except (AdapterTrainingError, TypeError, ValueError):  # failed, or a value of the wrong type
                break
            result = earlier["result"]
            print(f"home{self.key['home']}: round {number}/{rounds} reused ({result['status']}, held-out "
                  f"{result['accuracy']})", flush=True)  # fmt: skip
        following = len(self.results) + 1
        if following > rounds:
            needed = [self.current]
        else:
            _forget_from(self.folder, following)
            request = self.request(following)
            needed = [request.current_adapter, request.resume_adapter]
        return all(_reads(Path(p), spec) for p in needed if p)


def _reads(artifact: Path, spec: ModelSpec) -> bool:
    try:
        read_adapter(artifact, spec)
    except (OSError, ValueError, AdapterError):
        return False
    return True


def _same_request(asked: Any, request: RoundRequest) -> bool:
    """Whether a recorded request is ``request``: parsed, so a record from before a field was added (written
    without it) matches a request that leaves the field at its default."""
    try:
        return RoundRequest.from_json(json.dumps(asked)) == request
    except (FieldError, ValueError, TypeError, AttributeError):  # a field since removed, a bad value
        return False


def _earlier_round(folder: Path, number: int, request: RoundRequest) -> dict[str, Any] | None:
    """Round ``number`` as an earlier run left it, when it ran this very request and its result reads.

    ``round<k>.json`` is the record this module writes after the child. Without it (the parent was killed
    after the child finished, or the folder predates the records) the child's own files are read, and its
    own ``seconds`` stand for the wall time (they leave out the child's ~1 s start-up).
    """
    try:
        record = json.loads((folder / f"round{number}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        try:
            asked = json.loads((folder / f"request{number}.json").read_text(encoding="utf-8"))
            result = json.loads((folder / f"request{number}.result.json").read_text(encoding="utf-8"))
            record = {"request": asked, "result": result, "wall_s": float(result["seconds"])}
        except (OSError, ValueError, TypeError, KeyError):
            return None
    if not isinstance(record, dict) or not _same_request(record.get("request"), request):
        return None
    if not isinstance(record.get("result"), dict):
        return None
    result = record["result"]
    if not isinstance(record.get("wall_s"), (int, float)) or not set(result) >= _RESULT_KEYS:
        return None  # written by a version that recorded less: run the round again
    return record


# what a round's result must hold to be replayed (the gate's inputs and the home's totals)
_RESULT_KEYS = frozenset(
    ("status", "reason", "accuracy", "adapter_path", "checkpoint_path", "eval_examples", "steps", "peak_rss_mb",
     "records", "facts")
)  # fmt: skip


def _lineage(folder: Path) -> dict[str, Any] | None:
    """The settings other than ``rounds`` that ``folder``'s rounds were run with (None when unknown):
    ``lineage.json``, else the key of a ``done.json`` from before lineage files."""
    for name in (LINEAGE, DONE):
        try:
            doc = json.loads((folder / name).read_text(encoding="utf-8"))
            key = doc if name == LINEAGE else doc["key"]
            return {k: v for k, v in key.items() if k != "rounds"}
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
    return None


def _start_over(folder: Path, lineage: Mapping[str, Any]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _write_json(folder / LINEAGE, lineage)


def _forget_from(folder: Path, number: int) -> None:
    """Remove round ``number``'s and later rounds' files: records, requests, adapters, candidates."""
    for path in [*folder.glob("round*.json"), *folder.glob("request*.json")]:
        digits = path.name.removeprefix("round").removeprefix("request").split(".")[0]
        if digits.isdigit() and int(digits) >= number:
            path.unlink()
    for versions in (folder / "adapters", folder / "adapters" / "candidates"):
        for path in versions.glob("v*"):
            if path.name[1:].isdigit() and int(path.name[1:]) >= number:
                shutil.rmtree(path)


def _finish(
    folder: Path, key: Mapping[str, Any], results: Sequence[Mapping[str, Any]], current: str | None
) -> HomeAdapter:
    assert current is not None  # rounds >= 1, and the first one was accepted
    artifact = Path(current)
    adapter = HomeAdapter(
        home=int(key["home"]),
        twin_id=f"home{key['home']}",
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
        raise AdapterTrainingError(f"home{key['home']}: {artifact} has no manifest beside it")
    plain = {**asdict(adapter), "artifact": str(artifact.relative_to(folder))}
    _write_json(folder / DONE, {"key": key, "adapter": plain})
    return adapter


def _peak_at(results: Sequence[Mapping[str, Any]]) -> str:
    """ "round <k>, <phase>" of the largest peak RSS among the rounds (the phase when the round reported it)."""
    number, worst = max(enumerate(results, 1), key=lambda nr: float(nr[1]["peak_rss_mb"]))
    phase = peak_phase(worst.get("peak_rss_by_phase") or {})
    return f"round {number}, {phase}" if phase else f"round {number}"


def _write_json(path: Path, doc: Any) -> None:
    atomic_write_bytes(path, (json.dumps(doc, indent=2) + "\n").encode())
