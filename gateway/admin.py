"""The gateway's admin HTTP server (loopback by default): metrics, health, adapter operations.

- ``GET /metrics``   Prometheus text: bytes per tenant/direction/type/layer, batch sizes, queue depth,
  adapter residency and swap-ins, ZAP decisions, transport drops; kernel bytes per tenant/direction
  (TCP_INFO) and the kernel-vs-model difference per tenant/direction (bytes and ratio).
- ``GET /connections`` JSON: every live and recently closed TCP connection with its kernel counters
  (read now) and its reconciliation with the byte model, and the reconciliation per tenant.
- ``GET /healthz``   200 while the process runs.
- ``GET /readyz``    200 once serving, 503 while starting or draining.
- ``GET /twins/{twin}/adapters``             versions, the active one first.
- ``POST /twins/{twin}/adapters/rollback``   activate the previous version (``?to=N``: version N).
"""

from __future__ import annotations

import dataclasses
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.residency import AdapterKey
from shared.admin_http import serve
from shared.errors import TwinError, WireError
from shared.metrics import Metric

if TYPE_CHECKING:
    from gateway.service import GatewayService

SERVICE: web.AppKey[GatewayService] = web.AppKey("service")
GAUGES: web.AppKey[dict[str, Metric]] = web.AppKey("gauges")


async def start(service: GatewayService, stack: AsyncExitStack) -> str:
    app = web.Application()
    app[SERVICE] = service
    app[GAUGES] = _gauges(service)
    app.add_routes(
        [
            web.get("/metrics", metrics),
            web.get("/healthz", healthz),
            web.get("/readyz", readyz),
            web.get("/connections", connections),
            web.get("/twins/{twin}/adapters", versions),
            web.post("/twins/{twin}/adapters/rollback", rollback),
        ]
    )
    return await serve(app, service.cfg.admin.host, service.cfg.admin.port, stack)


async def metrics(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    _refresh(service, request.app[GAUGES])
    return web.Response(text=service.registry.render(), content_type="text/plain", charset="utf-8")


def _gauges(service: GatewayService) -> dict[str, Metric]:
    reg = service.registry
    return {
        "queue": reg.gauge("llmtwin_gateway_queue_depth", "Requests waiting for the engine"),
        "running": reg.gauge("llmtwin_gateway_running_rows", "Rows in the running batch"),
        "resident": reg.gauge("llmtwin_gateway_adapters_resident", "Adapters resident in the bank"),
        "swap_ins": reg.gauge("llmtwin_gateway_adapter_swap_ins", "Adapter loads into the bank so far"),
        "swap_ms": reg.gauge("llmtwin_gateway_adapter_last_swap_ms", "Duration of the last swap-in"),
        "zap": reg.gauge("llmtwin_gateway_zap_total", "ZAP decisions", ("result",)),
        "transport": reg.gauge("llmtwin_gateway_transport_total", "Transport events", ("event",)),
        "tenants": reg.gauge("llmtwin_gateway_tenants", "Tenants allowed now"),
    }


def _refresh(service: GatewayService, gauges: dict[str, Metric]) -> None:
    if service.batcher is not None:
        gauges["queue"].set(value=service.batcher.queued)
        gauges["running"].set(value=service.batcher.running)
    if service.residency is not None:
        gauges["resident"].set(value=len(service.residency.resident()))
        gauges["swap_ins"].set(value=service.residency.stats.swap_ins)
        gauges["swap_ms"].set(value=service.residency.stats.last_swap_ms)
    if service.zap is not None:
        gauges["zap"].set("allowed", value=service.zap.counters.allowed)
        gauges["zap"].set("denied", value=service.zap.counters.denied)
    counters = service.transport_counters()
    for field in dataclasses.fields(counters):
        gauges["transport"].set(field.name, value=getattr(counters, field.name))
    gauges["tenants"].set(value=len(service.tenants.tenants()))
    if service.kernel is not None:
        service.kernel.refresh()


async def connections(request: web.Request) -> web.Response:
    kernel = request.app[SERVICE].kernel
    if kernel is None:
        return web.json_response({"error": "the gateway is starting"}, status=503)
    return web.json_response(kernel.snapshot())


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    ready = request.app[SERVICE].ready.is_set()
    return web.json_response({"ready": ready}, status=200 if ready else 503)


async def versions(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.db is not None and service.adapters is not None
    twin = request.match_info["twin"]
    rows = await service.db.run(service.adapters.versions, twin)
    return web.json_response([dataclasses.asdict(v) for v in rows])


async def rollback(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    assert service.db is not None and service.adapters is not None
    twin = request.match_info["twin"]
    raw = request.query.get("to")
    try:
        to = int(raw) if raw is not None else None
    except ValueError:
        return web.json_response({"error": "to must be a version number"}, status=400)
    before = await service.db.run(service.adapters.active, twin)
    try:
        ref = await service.db.run(service.adapters.rollback, twin, to)
    except WireError as exc:
        return web.json_response({"error": exc.code, "detail": exc.detail}, status=exc.status)
    except TwinError as exc:
        return web.json_response({"error": "rollback_failed", "detail": str(exc)}, status=400)
    if before is not None and service.residency is not None and before.version != ref.version:
        service.residency.evict(AdapterKey(twin, before.version))  # free its slot once rows finish
    return web.json_response({"twin_id": ref.twin_id, "version": ref.version, "sha256": ref.sha256})
