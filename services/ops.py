"""Health, readiness and metrics endpoints, for every role.

``/healthz``: the process is alive. ``/readyz``: the process can do its role's job now
(docs/operations.md, "Readiness"): every role needs its control state replayed and the
event log answering; a consumer role also needs its consumer running; analytics also
needs its store; a role may add checks of its own (``runtime.checks``: the relay's
``ledger_writable``, false while it takes no work because it cannot record deliveries). The API and the relay never depend on ClickHouse for their job, so a
ClickHouse outage shows under ``degraded`` but does not take them out of service.
A probe of a process started on its own (Kubernetes, compose) never waits on a dependency its
role does not need: the store's state is then the last answer of a ping run beside the probes
(at most one at a time, ``STORE_RECHECK`` seconds apart), so ``/readyz`` answers within a
kubelet's default 1 s probe timeout even when ClickHouse is unreachable rather than refusing;
``degraded`` lags the store by up to ``STORE_RECHECK + STORE_TIMEOUT`` seconds, and a store
not yet asked is not listed.
``/metrics``: Prometheus. The API serves these itself; the other roles serve this small
app on POSTLINE_HTTP_PORT."""
from __future__ import annotations

import asyncio
import os
import time

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.log.port import LogNotStarted
from shared.runtime import Runtime

STORE_TIMEOUT = 3.0
STORE_RECHECK = 2.0
NEEDS_STORE = ("analytics",)  # the roles whose job is the analytics store itself


async def log_answers(runtime: Runtime) -> bool:
    try:
        return await runtime.log.ping()
    except LogNotStarted:
        return False


async def store_answers(runtime: Runtime) -> bool:
    if runtime.store is None:
        return False
    try:
        await asyncio.wait_for(runtime.store.ping(), STORE_TIMEOUT)
        return True
    except Exception:
        return False


class StoreWatch:
    """The analytics store's state for a role that does not need it, never awaited by a probe:
    ``last()`` is the latest ping's answer (None before the first) and starts the next ping,
    one at a time, once the latest was asked ``STORE_RECHECK`` seconds ago."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.answer: bool | None = None
        self.asked_at = 0.0
        self.ping: asyncio.Task | None = None

    def last(self) -> bool | None:
        now = time.monotonic()
        if self.ping is None or (self.ping.done() and now - self.asked_at >= STORE_RECHECK):
            self.asked_at = now
            self.ping = asyncio.create_task(self._ask(), name="store-ping")
        return self.answer

    async def _ask(self) -> None:
        self.answer = await store_answers(self.runtime)


async def readiness(runtime: Runtime, watch: StoreWatch | None = None) -> tuple[bool, dict[str, bool], dict[str, bool]]:
    """``(ready, checks, degraded)``: ``checks`` decide readiness; ``degraded`` lists
    dependencies that are down but that this process's roles do not need (the store's state
    from ``watch`` when given, never awaited; else asked now)."""
    roles = runtime.roles
    checks = {"control_replayed": _replayed(runtime),
              "event_log": await log_answers(runtime)}
    for role, task in roles.items():
        if role != "api":  # the API's server is what answers this request
            checks[f"{role}_running"] = not task.done()
    if "api" in roles:  # sends are appends: the last one must not have failed
        checks["event_log_writable"] = runtime.log.writable()
    checks.update((name, check()) for name, check in runtime.checks.items())
    degraded = {}
    if runtime.store is not None:
        if any(r in NEEDS_STORE for r in roles) or not roles:
            checks["analytics_store"] = await store_answers(runtime)
        elif (await store_answers(runtime) if watch is None else watch.last()) is False:
            degraded["analytics_store"] = False
    return all(checks.values()), checks, degraded


def _replayed(runtime: Runtime) -> bool:
    try:
        return runtime.control.ready.is_set()
    except LogNotStarted:
        return False


def add_ops_routes(app: FastAPI, runtime: Runtime | None) -> None:
    # A child of `postline all` asks its analytics process on each probe instead: one system on
    # one machine, whose start is announced (services/supervisor.py) once its stats can answer.
    watch = StoreWatch(runtime) if runtime is not None and not runtime.shared_ports else None

    # response_model=None: the handlers' return annotations are for mypy, not a response model
    @app.get("/healthz", include_in_schema=False, response_model=None)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False, response_model=None)
    async def readyz() -> JSONResponse:
        if runtime is None:
            return JSONResponse({"ready": False, "checks": {}, "degraded": {}}, status_code=503)
        ready, checks, degraded = await readiness(runtime, watch)
        return JSONResponse({"ready": ready, "checks": checks, "degraded": degraded}, status_code=200 if ready else 503)

    @app.get("/metrics", include_in_schema=False, response_model=None)
    async def metrics() -> Response:
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


def ops_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    add_ops_routes(app, runtime)
    return app
