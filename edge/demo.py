"""``llmtwin demo``: the whole system on one machine, the way a newcomer should first see it.

A gateway and three simulated homes run as real processes (``llmtwin gateway`` / ``llmtwin edge``)
with CURVE keys, SQLite files and the real base model. The homes replay the seeded scenario at an
accelerated clock and each runs its first fine-tuning round on its static facts (a child process
per home, LoRA on the real model, uploaded to the gateway through the outbox). Then each twin is
asked about its current state (shown beside the state the gateway holds; while a twin's adapter reads
the state worse than the base model, the base model answers these, and the demo says so), about static
facts that no prompt carries (only its adapter knows them), one inter-twin question is asked, and a
bandwidth summary is printed from the homes' bandwidth logs. Home3 trains and reports under keyed
pseudonyms of its objects (``shared.pseudonyms``): its questions go out as its tenant's client sends them,
printed beside the question, and its answers come back under the real names. Everything lives under one work folder;
processes are stopped on exit. The homes capture every payload they send (``[log] payload_capture``)
so ``python -m benchmarks.chaos.leaks <work>`` can show afterwards that none of the owners' secrets left
a home.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.client import ClientKeys, TwinClient
from shared.attacks import ReversePrompt, askable_facts, reverse_hit, reverse_prompts
from shared.keys import generate_keypair
from shared.modelspec import HF_DIR, default_cache_dir, find_prepared
from shared.protocol import messages as m
from shared.protocol.results import QueryResult
from shared.pseudonyms import TABLE_FILE, Pseudonyms
from shared.scenario import generate
from shared.semantic import object_prefix
from shared.templates import QAPair, is_household, normalize_answer, pairs

HOMES = ("home1", "home2", "home3")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    work: Path
    base: str = "smollm2-135m"
    cache_dir: Path | None = None
    speed: float = 120.0  # simulated seconds per real second
    sync_hours: float = 2.0  # simulated time to sync before asking
    tick_s: float = 10.0
    start_h: float = 18.0  # the homes come alive at 18:00 of the scenario day: lights, TV, heating
    finetune_s: float = 240.0  # each home's first round (three at once share the machine's cores)
    # homes that train and report under keyed pseudonyms of their objects (finetune.pseudonyms): the demo asks
    # them the way `llmtwin query --config` does, and shows what the gateway was sent
    pseudonym_homes: tuple[str, ...] = ("home3",)


def say(step: str, text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {step:<10} {text}", flush=True)


def run_demo(opts: DemoOptions) -> int:
    cache = opts.cache_dir or default_cache_dir(os.environ)
    work = opts.work.resolve()  # configs name absolute paths (relative ones resolve against the config file)
    work.mkdir(parents=True, exist_ok=True)
    say("model", f"preparing {opts.base} in {cache} (cached after the first run)")
    _run([sys.executable, "-m", "shared", "model", "prepare", "--base", opts.base, "--cache-dir", str(cache)])
    keys = _keys(work)
    gw_port, admin_port = _free_port(), _free_port()
    gateway_toml = _write_gateway(work, keys, cache, opts.base, gw_port, admin_port)
    with _processes() as procs:
        say("gateway", f"starting on tcp://127.0.0.1:{gw_port}")
        procs.append(_spawn(work / "gateway.log", "gateway", "--config", str(gateway_toml)))
        _wait_http(f"http://127.0.0.1:{admin_port}/readyz", procs[0], 300)
        admin = {}
        for i, home in enumerate(HOMES, start=1):
            port = _free_port()
            admin[home] = f"http://127.0.0.1:{port}"
            profile = _write_edge(work, keys, home, i, gw_port, port, opts)
            procs.append(_spawn(work / f"{home}.log", "edge", "--config", str(profile)))
        say("homes", f"3 edge daemons replaying the scenario at {opts.speed:g}x ({', '.join(HOMES)})")
        for home in opts.pseudonym_homes:
            say("homes", f"{home} names its objects by keyed pseudonyms: the key stays in {home}-data/")
        _wait_sync(admin, opts, procs)
        _wait_finetune(admin, opts, procs)
        asyncio.run(_questions(work, keys, gw_port, opts.pseudonym_homes))
        _bandwidth(work, opts, _synced_hours(admin, opts))
    say("done", f"logs and state are in {work}; processes stopped")
    return 0


# ---- set-up -------------------------------------------------------------------------------------


def _keys(work: Path) -> Path:
    keys = work / "keys"
    if not (keys / "server.key_secret").exists():
        for name in ("server", *HOMES):
            generate_keypair(keys, name, overwrite=True)
    tenants = work / "tenants"
    tenants.mkdir(exist_ok=True)
    for home in HOMES:
        (tenants / f"{home}.key").write_bytes((keys / f"{home}.key").read_bytes())
    say("keys", f"CURVE keys for the gateway and {len(HOMES)} homes in {keys}")
    return keys


def _write_gateway(work: Path, keys: Path, cache: Path, base: str, port: int, admin: int) -> Path:
    path = work / "gateway.toml"
    path.write_text(f"""[server]
bind = "tcp://127.0.0.1:{port}"
server_secret_key = "{keys / "server.key_secret"}"
tenants_dir = "{work / "tenants"}"
[storage]
data_dir = "{work / "gateway-data"}"
[model]
base = "{base}"
cache_dir = "{cache}"
threads = 2
[batching]
max_batch = 8
max_wait_ms = 20
[sharing]
groups = {{ harbour-51 = {json.dumps(list(HOMES))} }}
[admin]
port = {admin}
""")
    return path


def _write_edge(work: Path, keys: Path, home: str, index: int, gw_port: int, admin: int, opts: DemoOptions) -> Path:
    path = work / f"{home}.toml"
    path.write_text(f"""[device]
twin_id = "{home}"
profile = "demo-hub"
arch = "x86_64"
memory_mb = 8192
cpu_cores = 2
data_dir = "{work / (home + "-data")}"
[gateway]
endpoint = "tcp://127.0.0.1:{gw_port}"
server_public_key = "{keys / "server.key"}"
client_secret_key = "{keys / (home + ".key_secret")}"
request_timeout_s = 10.0
[sampling]
tick_s = {opts.tick_s}
keyframe_every_s = 3600.0
[[sources]]
type = "simulator"
home = {index}
speed = {opts.speed}
start_h = {opts.start_h}
[state]
share = "group"
sensitive_attributes = ["owner_name", "door_code", "presence_schedule", "alarm_pin", "wifi_password"]
[admin]
port = {admin}
[finetune]
enabled = true
base = "{opts.base}"
model_cache = "{opts.cache_dir or default_cache_dir(os.environ)}"
threads = 1
max_time_s = {opts.finetune_s}
memory_cap_mb = 3072
eval_threshold = 0.0
static_change_threshold = 0.5
pseudonyms = {"true" if home in opts.pseudonym_homes else "false"}
[log]
payload_capture = "{work / (home + "-data") / "payloads.cap"}"
""")
    return path


# ---- processes ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _spawn(log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "shared", *args], stdout=out, stderr=subprocess.STDOUT)


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: {' '.join(cmd[2:])} failed with status {done.returncode}")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            data = json.load(response)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _wait_http(url: str, proc: subprocess.Popen[bytes], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while _get_json(url) is None or not _get_json(url).get("ready", True):  # type: ignore[union-attr]
        if proc.poll() is not None:
            raise SystemExit(f"demo: the process behind {url} exited (status {proc.returncode}); see its log")
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: {url} did not become ready in {limit_s:.0f} s")
        time.sleep(0.5)


def _wait_sync(admin: dict[str, str], opts: DemoOptions, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until every home's simulated clock has run ``sync_hours`` past the start and prompts arrived."""
    goal = _scenario_start(opts) + opts.sync_hours * 3600
    deadline = time.monotonic() + opts.sync_hours * 3600 / opts.speed * 4 + 120
    last = ""
    while True:
        status = {home: _get_json(url + "/status") or {} for home, url in admin.items()}
        clock = {h: float(s.get("clock_s", 0.0)) for h, s in status.items()}  # type: ignore[arg-type]
        acked = {h: _dig(s, "uplink", "acked") for h, s in status.items()}
        line = ", ".join(f"{h} {_hhmm(clock[h])} ({acked[h]} prompts acked)" for h in admin)
        if line != last:
            say("sync", line)
            last = line
        if all(c >= goal for c in clock.values()) and all(a > 0 for a in acked.values()):
            return
        if any(p.poll() is not None for p in procs):
            raise SystemExit("demo: a process exited early; see the logs in the work folder")
        if time.monotonic() > deadline:
            raise SystemExit("demo: the homes did not sync in time")
        time.sleep(1.0)


def _wait_finetune(admin: dict[str, str], opts: DemoOptions, procs: list[subprocess.Popen[bytes]]) -> None:
    """Until every home's first round has ended and, when accepted, the gateway serves its adapter."""
    deadline = time.monotonic() + opts.finetune_s * 3 + 600
    last, said = "", 0.0
    while True:
        status: dict[str, dict[str, Any]] = {home: _finetune_status(url) for home, url in admin.items()}
        parts, finished = [], 0
        for home, ft in status.items():
            rounds = ft.get("rounds") or []
            first = rounds[-1] if rounds else None
            progress = ft.get("progress")
            if first is None:
                parts.append(f"{home} waiting for its facts to settle")
            elif first["status"] == "running" and progress:
                parts.append(f"{home} v{first['version']} {progress['phase']} {progress['step']}/{progress['total']}")
            elif first["status"] == "running":
                parts.append(f"{home} v{first['version']} starting")
            elif first["status"] == "accepted" and first["upload"] == "pending":
                parts.append(f"{home} v{first['version']} uploading")
            else:
                parts.append(f"{home} v{first['version']} {first['status']}")
                finished += 1
        line = ", ".join(parts)
        shape = re.sub(r" \d+/\d+", "", line)  # the phases, without step counts
        if shape != last or time.monotonic() - said > PROGRESS_EVERY_S:
            say("fine-tune", line)
            last, said = shape, time.monotonic()
        if finished == len(admin):
            for home, ft in status.items():
                first = (ft.get("rounds") or [])[-1]
                say("fine-tune", f"{home} v{first['version']} {first['status']}: {first['reason']}")
                if first["upload"] == "rejected":
                    say("fine-tune", f"{home} v{first['version']} refused by the gateway: {first['upload_detail']}")
                elif first["upload"] == "acked":
                    say("fine-tune", f"{home} v{first['version']} uploaded and served by the gateway")
            say("fine-tune", "the demo's gate is 0 so every adapter deploys; a device's default gate is 0.9")
            return
        if any(p.poll() is not None for p in procs):
            raise SystemExit("demo: a process exited early; see the logs in the work folder")
        if time.monotonic() > deadline:
            raise SystemExit("demo: the fine-tuning rounds did not finish in time")
        time.sleep(2.0)


def _finetune_status(url: str) -> dict[str, Any]:
    section = (_get_json(url + "/status") or {}).get("finetune")
    return section if isinstance(section, dict) else {}


def _hhmm(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch)) if epoch else "--:--"


def _dig(doc: Any, *path: str) -> int:
    for key in path:
        doc = doc.get(key) if isinstance(doc, dict) else None
    return int(doc) if isinstance(doc, int | float) else 0


# ---- questions and bandwidth ----------------------------------------------------------------------


QUESTIONS = {
    "home1": ["Is the front door locked?", "Which lights are on in the kitchen?"],
    "home2": ["What is the temperature in the living room?"],
    "home3": ["Is the TV playing?"],
}
# the entities each twin question is about (SQL LIKE on the gateway's entity_state), shown beside the answer
ABOUT = {
    "Is the front door locked?": "lock.%front_door",
    "Which lights are on in the kitchen?": "light.%kitchen%",
    "What is the temperature in the living room?": "sensor.%living_room_temperature",
    "Is the TV playing?": "media_player.%tv",
}


FACTS_PER_HOME = 3
DEMO_KINDS = ("maker", "model", "range", "year")
PROGRESS_EVERY_S = 20.0


def fact_questions(home_index: int, n: int = FACTS_PER_HOME) -> list[QAPair]:
    """Held-out paraphrases (never trained on) about static facts of one home, one per kind, no secrets."""
    facts = generate(7, 3, 60.0).homes[home_index].static_facts()
    chosen: dict[str, QAPair] = {}
    for pair in pairs(facts):
        kind = pair.template.partition(".")[0]
        device = not is_household(pair.entity_id)  # a device's facts rather than the household's
        if pair.split == "heldout" and not pair.sensitive and device and kind in DEMO_KINDS and kind not in chosen:
            chosen[kind] = pair
    return [chosen[k] for k in DEMO_KINDS if k in chosen][:n]


async def _questions(work: Path, keys: Path, port: int, pseudonym_homes: tuple[str, ...]) -> None:
    endpoint = f"tcp://127.0.0.1:{port}"
    db = work / "gateway-data" / "gateway.sqlite3"  # the gateway's file (gateway.service), read-only here
    for index, (home, questions) in enumerate(QUESTIONS.items()):
        client_keys = ClientKeys.from_files(keys / "server.key", keys / f"{home}.key_secret")
        # the tenant's table, as `llmtwin query --config` reads it; an empty one rewrites nothing
        names = Pseudonyms.load(work / f"{home}-data" / TABLE_FILE) if home in pseudonym_homes else Pseudonyms(home, {})
        async with TwinClient(endpoint, client_keys) as client:
            for q in questions:
                # the homes keep replaying at speed: the state may change while the question is answered
                before = await asyncio.to_thread(held_state, db, home, ABOUT[q], names)
                await _ask(client, home, m.Query(home, q, max_new_tokens=48), names)
                after = await asyncio.to_thread(held_state, db, home, ABOUT[q], names)
                held = before if after == before else f"{before} when asked; {after} after the answer"
                print(f"{'':21}  the gateway's state of it: {held}")
            for pair in fact_questions(index):
                query = m.Query(home, pair.question, max_new_tokens=16, context="none")
                await _ask(client, home, query, names, expected=pair.answer)
            if home == "home1":
                await _ask(
                    client,
                    home,
                    # every home reports its temperatures at all times, so the gateway always computes this one
                    # (a brightness average needs a light on somewhere, and without it the model guesses)
                    m.InterQuery(home, "What is the average temperature in our group?", max_new_tokens=48),
                    names,
                )
                await _reverse_attack(client, home, index)


def held_state(db: Path, twin: str, pattern: str, names: Pseudonyms) -> str:
    """The state the gateway holds for ``twin``'s entities matching ``pattern`` (read-only, beside the
    running gateway), so the reader can check an answer: "hallway front door locked". Under pseudonyms the
    pattern is matched on the tenant's own names and the gateway's rows are read by their pseudonyms."""
    wanted = re.compile(re.escape(pattern).replace("%", ".*"))
    with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT entity_id, state FROM entity_state WHERE twin_id = ? ORDER BY entity_id", (twin,)
        ).fetchall()
    real = {fake: entity for entity, fake in names.table.items()}
    prefix = object_prefix(twin)
    named = [
        (real.get(entity, entity).partition(".")[2].removeprefix(prefix).replace("_", " "), state)
        for entity, state in rows
        if wanted.fullmatch(real.get(entity, entity))
    ]
    return ", ".join(f"{name} {state or 'unavailable'}" for name, state in named) or "none reported"


def reverse_attack_prompt(home_index: int) -> ReversePrompt:
    """A description -> object question (which device has this model?), in the form ``llmtwin bench
    paper`` measures over hundreds. Never about a secret: the question itself would carry the secret to
    the gateway, and the leak scan of a demo run must find none there."""
    home = generate(7, 3, 60.0).homes[home_index]
    facts = askable_facts(home.home_id, home.static_facts())
    secret = {(f.entity_id, f.attribute) for f in home.static_facts() if f.sensitive}
    prompts = [p for p in reverse_prompts(facts, {}) if (p.entity_id, p.attribute) not in secret]
    return next((p for p in prompts if p.attribute == "model"), prompts[0])


async def _reverse_attack(client: TwinClient, home: str, home_index: int) -> None:
    """One reverse prompt against the home's adapter: it was only ever trained object -> description."""
    attack = reverse_attack_prompt(home_index)
    reply = await client.request(m.Query(home, attack.question, max_new_tokens=16, context="none"), timeout_s=300)
    result = reply.raise_for_error().result
    assert isinstance(result, QueryResult)
    say("attack", f"{home} (reverse prompt, adapter only): {attack.question}")
    print(f"{'':21}→ {result.answer}")
    if reverse_hit(result.answer, attack):
        print(f"{'':21}  attack SUCCEEDED: the answer names {attack.targets[0]!r}")
    else:
        print(
            f"{'':21}  attack failed: the answer names none of {', '.join(repr(t) for t in attack.targets)} "
            "(training pairs run object -> description only)"
        )


async def _ask(
    client: TwinClient,
    home: str,
    message: m.Query | m.InterQuery,
    names: Pseudonyms,
    expected: str | None = None,
) -> None:
    """Ask as the tenant's client does: object names out as their pseudonyms (when the home uses them), and
    back in the answer."""
    started = time.monotonic()
    facts = isinstance(message, m.Query) and message.context == "none"  # the adapter alone: by fact names
    sent = dataclasses.replace(message, question=names.hide(message.question, facts=facts))
    reply = (await client.request(sent, timeout_s=300)).raise_for_error()
    result = reply.result
    assert isinstance(result, QueryResult)
    kind = "inter-twin" if isinstance(message, m.InterQuery) else "twin"
    if expected is not None:
        kind = "static fact, adapter only"
    say("ask", f"{home} ({kind}): {message.question}")
    if sent.question != message.question:
        print(f"{'':21}  sent to the gateway as: {sent.question}")
    answer = names.reveal(result.answer)
    print(f"{'':21}→ {answer}")
    if answer != result.answer:
        print(f"{'':21}  the twin said: {result.answer}")
    if expected is not None:
        right = normalize_answer(answer) == normalize_answer(expected)
        print(f"{'':21}  {'right' if right else 'wrong'}: the device's record says {expected!r}")
    for agg in result.aggregates:
        print(f"{'':21}  computed: {agg.name} = {agg.value:g}{agg.unit} over {agg.n} entities")
    twins = sorted({r.twin_id for r in result.used})
    reader = f"adapter v{result.adapter_version}"
    if result.base_only:  # see the round's "state questions" scores above
        reader = f"the base model alone (adapter v{result.adapter_version} reads the state worse than it)"
    print(
        f"{'':21}  context: {len(result.used)} prompts from {', '.join(twins) or 'none'}, "
        f"{reader}, {time.monotonic() - started:.1f} s"
    )


def _bandwidth(work: Path, opts: DemoOptions, hours: float) -> None:
    """Sync traffic as the homes logged it (every message both ways, on the wire) vs the baseline."""
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    span = [float("inf"), 0.0]  # first and last record (wall clock)
    for home in HOMES:
        with contextlib.suppress(FileNotFoundError), (work / f"{home}-data" / "bandwidth.jsonl").open() as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("type") == "tcp_info":  # kernel samples: `llmtwin bandwidth` reconciles them
                    continue
                span[:] = [min(span[0], rec["ts"]), max(span[1], rec["ts"])]
                row = totals[(home, rec["dir"], rec["type"])]
                row[0] += 1
                row[1] += rec["payload"]
                row[2] += rec["compressed"]
                row[3] += rec["frame"]
    say("bandwidth", "what the homes sent and received, from their bandwidth logs (bytes)")
    print(f"{'':21}{'home':<7}{'dir':<5}{'type':<15}{'msgs':>6}{'payload':>11}{'compressed':>11}{'on wire':>11}")
    for (home, direction, kind), (n, payload, compressed, frame) in sorted(totals.items()):
        print(f"{'':21}{home:<7}{direction:<5}{kind:<15}{n:6d}{payload:11,d}{compressed:11,d}{frame:11,d}")
    adapters = {k: v for k, v in totals.items() if k[2].startswith("adapter_")}
    sent = sum(v[3] for k, v in totals.items() if k not in adapters)
    baseline = _raw_baseline_bytes(opts, hours)
    if adapters:
        shipped = sum(v[3] for v in adapters.values())
        uploads = sum(v[0] for k, v in adapters.items() if k[2] == "adapter_commit")
        full = _full_model_bytes(opts)
        say(
            "bandwidth",
            f"adapters: {uploads} uploads, {shipped:,d} B on the wire; a federated round would ship the full "
            f"weights instead ({full:,d} B per home): {full * uploads / max(shipped, 1):.0f}x more",
        )
    if sent:
        say(
            "bandwidth",
            f"LLM-Twin state sync: {sent:,d} B on the wire (both ways, CURVE framing included) for "
            f"{hours:.1f} simulated h of 3 homes; the full JSON state of every entity every {opts.tick_s:g} s "
            f"would be {baseline:,d} B of JSON alone: {baseline / sent:.0f}x more (the evening is the busiest "
            "part of the day; the README quotes the whole 24 h trace)",
        )
    if span[1] > span[0]:
        _plot(work, f"full JSON state every {opts.tick_s:g} s", baseline / (span[1] - span[0]))


def _plot(work: Path, baseline_name: str, baseline_rate: float) -> None:
    """Cumulative wire bytes by message type from the homes' logs, with the full-JSON baseline drawn in,
    written by the same command an operator runs (`llmtwin bandwidth --plot`)."""
    out, curves = work / "bandwidth.png", work / "baselines.json"
    curves.write_text(json.dumps({"baselines": [{"name": baseline_name, "bytes_per_s": baseline_rate}]}))
    logs = [str(work / f"{home}-data" / "bandwidth.jsonl") for home in HOMES]
    cmd = [sys.executable, "-m", "shared", "bandwidth", *logs, "--plot", str(out), "--baselines", str(curves)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode == 0 and out.exists():
        say("bandwidth", f"plot: {out} (cumulative bytes on the wire by message type, baseline drawn in)")
    else:
        say("bandwidth", f"no plot written: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")


def _full_model_bytes(opts: DemoOptions) -> int:
    """The base model's weights as a federated round would ship them (the prepared fp32 safetensors)."""
    found = find_prepared(opts.cache_dir or default_cache_dir(os.environ), opts.base)
    return sum(p.stat().st_size for p in (found / HF_DIR).glob("*.safetensors")) if found else 0


def _synced_hours(admin: dict[str, str], opts: DemoOptions) -> float:
    """Simulated hours every home has replayed so far (the homes kept syncing while they fine-tuned)."""
    clocks = [float((_get_json(url + "/status") or {}).get("clock_s", 0.0)) for url in admin.values()]  # type: ignore[arg-type]
    return max(opts.sync_hours, (min(clocks) - _scenario_start(opts)) / 3600)


def _scenario_start(opts: DemoOptions) -> float:
    return datetime.fromisoformat(generate(7, 3, 3600.0).start_iso).timestamp() + opts.start_h * 3600


def _raw_baseline_bytes(opts: DemoOptions, hours: float) -> int:
    """What a conventional twin would send: every entity's full state object at every tick."""
    scenario = generate(7, 3, 86400.0)
    states: dict[str, str] = {}
    start, end = opts.start_h * 3600, opts.start_h * 3600 + hours * 3600
    total, t = 0, start
    trace = iter(scenario.trace)
    pending = next(trace, None)
    while t <= end:
        while pending is not None and pending.ts_s <= t:
            states[pending.entity_id] = json.dumps(
                {"entity_id": pending.entity_id, "state": pending.state, "attributes": dict(pending.attributes)}
            )
            pending = next(trace, None)
        total += sum(len(s) for s in states.values())
        t += opts.tick_s
    return total
