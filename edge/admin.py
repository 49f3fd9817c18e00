"""The edge daemon's admin server (loopback): health, metrics, status, on-demand actions.

- ``GET /healthz``  200 while the database answers and the pipeline makes progress, else 503.
- ``GET /metrics``  Prometheus text: bytes per direction/type/layer, readings, prompts, outbox; kernel
  bytes (TCP_INFO) and the kernel-vs-model difference per direction.
- ``GET /status``   JSON: counters, sources, uplink, budget, fine-tuning (progress, recent rounds), and
  ``kernel``: the gateway connection(s) with kernel counters read now, reconciled with the byte model.
- ``POST /finetune`` start a fine-tuning round now: 202, or 409 while one runs (``llmtwin edge train-now``).
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiohttp import web

from edge.outbox import Outbox
from shared.admin_http import serve
from shared.metrics import Metric

if TYPE_CHECKING:
    from edge.daemon import EdgeDaemon

DAEMON: web.AppKey[EdgeDaemon] = web.AppKey("daemon")
GAUGES: web.AppKey[dict[str, Metric]] = web.AppKey("gauges")


async def start(daemon: EdgeDaemon, stack: AsyncExitStack) -> str:
    app = web.Application()
    app[DAEMON] = daemon
    app[GAUGES] = _gauges(daemon)
    app.add_routes([web.get("/healthz", healthz), web.get("/metrics", metrics), web.get("/status", status)])
    app.add_routes([web.post("/finetune", finetune)])
    return await serve(app, daemon.cfg.admin.host, daemon.cfg.admin.port, stack)


async def healthz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    ok = await daemon.healthy(stale_after_s=60.0)
    return web.json_response({"healthy": ok}, status=200 if ok else 503)


async def status(request: web.Request) -> web.Response:
    return web.json_response(await snapshot(request.app[DAEMON]))


async def finetune(request: web.Request) -> web.Response:
    trainer = request.app[DAEMON].trainer
    if trainer is None:
        return web.json_response({"error": "the daemon is starting"}, status=503)
    if not trainer.request_round("on demand"):
        busy = {"error": "a round is running or about to start", "version": trainer.running}
        return web.json_response(busy, status=409)
    return web.json_response({"started": True}, status=202)


async def snapshot(daemon: EdgeDaemon) -> dict[str, Any]:
    outbox = await daemon.db.run(Outbox.counts)
    return {
        "twin_id": daemon.cfg.device.twin_id,
        "clock_s": daemon.now(),  # the readings' clock: scenario time under the simulator
        "pipeline": dataclasses.asdict(daemon.pipeline.stats),
        "uplink": dataclasses.asdict(daemon.uplink.stats) if daemon.uplink else None,
        "outbox": outbox,
        "sources": [dataclasses.asdict(c.stats) for c in daemon.coordinators],
        "budget": {
            "daily_bytes": daemon.budget.daily_bytes,
            "used_today": daemon.budget.used_today,
            "stretch": daemon.budget.stretch(),
        },
        "finetune": await daemon.trainer.snapshot() if daemon.trainer else None,
        "kernel": daemon.kernel.snapshot() if daemon.kernel else None,
    }


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON]
    snap = await snapshot(daemon)
    gauges = request.app[GAUGES]
    for key in ("readings", "changes", "ticks", "prompts", "keyframes", "dropped_readings"):
        gauges["pipeline"].set(key, value=snap["pipeline"][key])
    for key, value in snap["outbox"].items():
        gauges["outbox"].set(key, value=value)
    for src in snap["sources"]:
        gauges["source_up"].set(src["source"], value=1.0 if src["state"] == "up" else 0.0)
    gauges["budget"].set("daily", value=snap["budget"]["daily_bytes"])
    gauges["budget"].set("used_today", value=snap["budget"]["used_today"])
    return web.Response(text=daemon.registry.render(), content_type="text/plain", charset="utf-8")


def _gauges(daemon: EdgeDaemon) -> dict[str, Metric]:
    reg = daemon.registry
    return {
        "pipeline": reg.gauge("llmtwin_edge_pipeline", "Readings, changes, ticks and prompts so far", ("what",)),
        "outbox": reg.gauge("llmtwin_edge_outbox_items", "Outbox items by status", ("status",)),
        "source_up": reg.gauge("llmtwin_edge_source_up", "1 while a source is up", ("source",)),
        "budget": reg.gauge("llmtwin_edge_budget_bytes", "Data budget and use today", ("what",)),
    }
