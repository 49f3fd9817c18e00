"""Part 5, leak scan: the scenario's secrets must appear nowhere outside the devices.

:func:`scan_work` scans a work folder laid out like ``llmtwin demo``'s (``gateway.toml`` and the edge
profiles in it or one level below) for every sensitive value of the scenario the profiles replay
(owner name, door code, alarm PIN, wifi password, presence schedule of every home), in:

- ``gateway_storage``: every file under the gateway's data dir (SQLite files with their WAL, the
  adapter store and upload staging, the bandwidth log);
- ``logs``: every ``*.log`` in the folder (process output of gateway and daemons) and the edges'
  bandwidth logs;
- ``payloads``: every application payload the edges sent, plain (before lz4 and CURVE): the
  profiles' ``[log] payload_capture`` files, or, for a work folder made without capture, the state
  prompts still in each outbox (what was sent, byte for byte) — reported as such.

Matching rules (short values, encodings) are shared.leakscan's. :func:`run_part` makes such a folder
with a shortened real pipeline (gateway and three daemons as processes, the tiny model, one home's
fine-tuning round and adapter upload, the demo's questions) and scans it. Against a demo folder::

    python -m benchmarks.chaos.leaks .demo        # exit status 1 when anything is found
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sqlite3
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.chaos.edgeproc import EdgeProcess, edge_profile
from benchmarks.chaos.gatewayproc import ChaosEnv, GatewayProcess, make_env, query_db, tiny_cache, until
from benchmarks.chaos.report import ChaosCounts
from shared.config import EdgeConfig, GatewayConfig, load_config
from shared.config.edge import SimulatorSource
from shared.leakscan import Hit, Needle, needles, scan_bytes, scan_capture, scan_path
from shared.scenario import generate

HOMES = ("home1", "home2", "home3")
FINETUNE = """enabled = true
base = "tiny"
model_cache = "{cache}"
threads = 1
max_steps = 4
max_time_s = 120.0
eval_threshold = 0.0
memory_cap_mb = 4096
static_change_threshold = 0.5"""


@dataclass
class LeakReport:
    values: int = 0  # sensitive values searched for
    scanned: dict[str, int] = field(default_factory=dict)  # category -> files / payloads scanned
    hits: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, category: str, n: int, hits: list[Hit]) -> None:
        self.scanned[category] = self.scanned.get(category, 0) + n
        self.hits.extend(Hit(h.label, h.form, f"{category}: {h.where}", h.offset) for h in hits)

    def to_json(self) -> dict[str, Any]:
        return {"values": self.values, "scanned": self.scanned, "leak_hits": len(self.hits),
                "hits": [_hit(h) for h in self.hits[:200]],
                "notes": self.notes}  # fmt: skip


def _hit(h: Hit) -> dict[str, Any]:
    return {"label": h.label, "form": h.form, "where": h.where, "offset": h.offset}


# ---- scanning a work folder -----------------------------------------------------------------------


def sensitive_values(profiles: list[EdgeConfig]) -> dict[str, str]:
    """label → value for every sensitive fact of every scenario the profiles' simulators replay."""
    values: dict[str, str] = {}
    for cfg in profiles:
        for source in cfg.sources:
            if isinstance(source, SimulatorSource):
                for fact in generate(source.seed, source.homes, 60.0).static_facts():
                    if fact.sensitive:
                        home = fact.entity_id.split(".", 1)[1].removesuffix("_profile")
                        values[f"{home} {fact.attribute}"] = fact.rendered()
    return values


def scan_work(work: Path) -> LeakReport:
    report = LeakReport()
    gateway = load_config(GatewayConfig, work / "gateway.toml")
    paths = sorted(p for p in work.rglob("*.toml") if p.name != "gateway.toml")
    profiles = [load_config(EdgeConfig, p) for p in paths]
    targets = needles(sensitive_values(profiles))
    report.values = len(targets)
    if not targets:
        report.notes.append("no simulator profile found: nothing to search for")
        return report
    report.add("gateway_storage", *scan_path(gateway.storage.data_dir, targets, relative_to=work))
    for log in sorted(work.glob("*.log")) + sorted(work.glob("*/*.log")):
        report.add("logs", *scan_path(log, targets, relative_to=work))
    for cfg in profiles:
        for bw in sorted(cfg.device.data_dir.glob("bandwidth.jsonl*")):
            report.add("logs", *scan_path(bw, targets, relative_to=work))
        _scan_payloads(report, cfg, targets)
    return report


def _scan_payloads(report: LeakReport, cfg: EdgeConfig, targets: list[Needle]) -> None:
    capture = cfg.log.payload_capture
    twin = cfg.device.twin_id
    if capture is not None and capture.exists():
        report.add("payloads", *scan_capture(capture, targets))
        return
    outbox = cfg.device.data_dir / "edge.sqlite3"
    rows = query_db(outbox, "SELECT id, kind, body FROM outbox ORDER BY id")
    for id_, kind, body in rows:
        report.add("payloads", 1, scan_bytes(bytes(body), targets, f"{twin} outbox item {id_} ({kind})"))
    report.notes.append(f"{twin}: no payload capture; scanned the {len(rows)} payloads still in its outbox")


# ---- the bench part: a shortened real pipeline ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeakOptions:
    prompts: int = 40  # state prompts per home at the gateway before the questions
    finetune: bool = True  # home1 runs one (tiny) fine-tuning round and uploads its adapter
    finetune_limit_s: float = 300.0


async def run_part(work: Path, cache_dir: Path | None, opts: LeakOptions = LeakOptions()) -> ChaosCounts:
    cache = await asyncio.to_thread(tiny_cache, cache_dir)
    details = await run_pipeline(work, cache, opts)
    report = await asyncio.to_thread(scan_work, work)
    counts = ChaosCounts(leak_hits=len(report.hits), max_rss_mb=details.pop("max_rss_mb"))
    counts.details = {**details, "scan": report.to_json()}
    return counts


async def run_pipeline(work: Path, cache: Path, opts: LeakOptions) -> dict[str, Any]:
    """Gateway + three daemons (payload capture on), sync, optional fine-tune + upload, questions."""
    env = make_env(work, cache, HOMES, group=HOMES)
    gw = GatewayProcess(env, work / "gateway.log")
    await gw.start()
    edges = []
    details: dict[str, Any] = {}
    try:
        for i, home in enumerate(HOMES, start=1):
            finetune = FINETUNE.format(cache=cache) if opts.finetune and i == 1 else "enabled = false"
            profile = edge_profile(work, env, home, home=i, capture=work / home / "payloads.cap", finetune=finetune)
            edges.append(EdgeProcess(profile, work / f"{home}.log"))
            await edges[-1].start()
        for home in HOMES:
            await until(lambda h=home: _prompts(env.db_path, h) >= opts.prompts, 120)  # type: ignore[misc]
        if opts.finetune:
            with contextlib.suppress(TimeoutError):
                await until(lambda: bool(query_db(env.db_path, "SELECT 1 FROM adapter_versions")),
                            opts.finetune_limit_s, every_s=0.5)  # fmt: skip
            details["adapters_uploaded"] = len(query_db(env.db_path, "SELECT 1 FROM adapter_versions"))
        details["answers"] = await _ask_all(env.endpoint, env)
        gw.sample_rss()
    finally:
        for proc in edges:
            await proc.stop()
        await gw.stop()
    details["prompts"] = {h: _prompts(env.db_path, h) for h in HOMES}
    details["max_rss_mb"] = gw.max_rss_mb
    return details


def _prompts(db: Path, twin: str) -> int:
    rows = query_db(db, "SELECT COUNT(*) FROM prompts WHERE twin_id = ?", [twin])
    return int(rows[0][0]) if rows else 0


async def _ask_all(endpoint: str, env: ChaosEnv) -> int:
    """The demo's questions: state, static facts (the adapter alone) and one inter-twin question."""
    from edge.client import TwinClient
    from edge.demo import QUESTIONS, fact_questions
    from shared.protocol import messages as m

    answered = 0
    for index, (home, questions) in enumerate(QUESTIONS.items()):
        async with TwinClient(endpoint, env.client_keys(home)) as client:
            asks: list[m.Query | m.InterQuery] = [m.Query(home, q, max_new_tokens=8) for q in questions]
            asks += [m.Query(home, p.question, max_new_tokens=8, context="none") for p in fact_questions(index)]
            if home == "home1":
                asks.append(m.InterQuery(home, "What is the average light brightness in our group?", max_new_tokens=8))
            for ask in asks:
                reply = await client.request(ask, timeout_s=120)
                answered += isinstance(reply.message, m.Final)
    return answered


# ---- command line ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos.leaks", description=__doc__.split("\n")[0])
    parser.add_argument("work", type=Path, help="a work folder such as .demo (llmtwin demo)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = scan_work(args.work)
    except (OSError, sqlite3.Error, ValueError) as exc:
        print(f"leak scan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(f"{report.values} sensitive values; scanned: "
              + ", ".join(f"{k} {v}" for k, v in report.scanned.items()) + f"; {len(report.hits)} hits")  # fmt: skip
        for note in report.notes:
            print(f"  note: {note}")
        for hit in report.hits:
            print(f"  HIT {hit.label} ({hit.form}) in {hit.where} at byte {hit.offset}")
    return 1 if report.hits else 0


if __name__ == "__main__":
    sys.exit(main())
