"""Health, readiness and metrics endpoints, for every role.

``/healthz``: the process is alive. ``/readyz``: the control topic is replayed and the event
log (and the analytics store, where the role uses one) answers. ``/metrics``: Prometheus.
The API serves these itself; the other roles serve this small app on POSTLINE_HTTP_PORT."""
from __future__ import annotations

import asyncio
import os

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.store import queries


async def readiness(runtime) -> tuple[bool, dict]:
    checks = {"control_replayed": bool(runtime.control and runtime.control.ready.is_set())}
    if runtime.store is not None:
        try:
            await asyncio.wait_for(queries.ping(runtime.store), 3)
            checks["analytics_store"] = True
        except Exception:
            checks["analytics_store"] = False
    return all(checks.values()), checks


def add_ops_routes(app: FastAPI, runtime) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        ready, checks = await readiness(runtime)
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics():
        return Response(exposition(), media_type=CONTENT_TYPE_LATEST)


def exposition() -> bytes:
    """This process's metrics; under `postline all`, every process's: their values meet in
    PROMETHEUS_MULTIPROC_DIR (services/supervisor.py), so any API process answers for all."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry)


def ops_app(runtime) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_ops_routes(app, runtime)
    return app
