"""Run roles in this process: the API (HTTP and SMTP submission) and the consumers, until
stopped. ``postline ROLE`` (services/cli.py) and each child of `postline all`
(services/supervisor.py) both start here, so neither imports the other.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Generator, cast
from urllib.parse import unquote, urlparse

from shared.process_start import started
from shared.runtime import Runtime
from shared.settings import Settings, load_settings

if TYPE_CHECKING:  # imported where used: a process loads only its roles' modules
    from starlette.types import ASGIApp

    from services.analytics.clickhouse_http import ChdbHttpServer
    from shared.store.port import AnalyticsStore

log = logging.getLogger("postline")
ROLES = ("all", "api", "relay", "webhooks", "analytics", "housekeeping")
# A command started on its own owns its data dir alone, so `postline relay` also runs that data
# dir's housekeeping (services/housekeeping.py); `postline all` places housekeeping itself.
COMMAND_ROLES = {"relay": "relay+housekeeping"}


class _Server:
    """uvicorn without its own signal handling: this process owns SIGTERM/SIGINT."""

    def __init__(self, app: ASGIApp, settings: Settings, reuse_port: bool = False) -> None:
        """``reuse_port``: bind with SO_REUSEPORT so several API processes share the port
        (the kernel spreads connections over them)."""
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Generator[None, None, None]:
                yield

        from services import http_server

        cap = settings.http_max_connections or http_server.default_max_connections()
        self.server = Server(uvicorn.Config(app, host=settings.http_host, port=settings.http_port, log_config=None,
                                            access_log=False, lifespan="off", loop="none",
                                            http=http_server.protocol(settings.http_header_timeout,
                                                                      settings.http_body_timeout, cap),
                                            timeout_keep_alive=settings.http_keepalive_timeout,
                                            limit_concurrency=cap))
        self.sockets = [shared_listener(settings.http_host, settings.http_port)] if reuse_port else None

    async def run(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self.server.serve(sockets=self.sockets))
        await stop.wait()
        self.server.should_exit = True
        await task


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket with SO_REUSEPORT: every API process of `postline all` binds
    its own on the same port (same user only: the kernel refuses other users' sockets)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(addr)
    sock.listen(2048)
    sock.set_inheritable(False)
    return sock


async def run_roles(role: str, stop: asyncio.Event, settings: Settings | None = None, *, supervised: bool = False,
                    serve_store: tuple[socket.socket, str] | None = None,
                    relay_share: tuple[int, int] = (0, 1)) -> None:
    """Start ``role`` (every role for ``all``; several joined by ``+``, as `postline all`'s
    background process ``analytics+webhooks``) and run until ``stop`` is set.

    ``supervised``: this process is one child of `postline all` (services/supervisor.py): the
    parent made the default workspace and prints the banner, API processes share the HTTP
    and submission ports (SO_REUSEPORT), and the other roles serve no HTTP port.
    ``serve_store``: (analytics) ``(listening socket, URL with credentials)``: serve this
    process's chDB there to the other processes. ``relay_share``: (relay) ``(index, count)``
    of this relay process among those of `postline all`."""
    settings = settings or load_settings()
    rt = Runtime(settings)
    rt.shared_ports, rt.relay_share = supervised, relay_share
    wanted = ROLES[1:] if role == "all" else tuple(role.split("+"))
    # a webhooks process on its own reads the store only when it is a server (POSTLINE_CLICKHOUSE_URL):
    # it fills tracking events' message fields from it (services/webhooks/runner.py), not worth a chDB of its own
    webhooks_reads = "webhooks" in wanted and settings.clickhouse_url is not None
    await rt.start(with_store=bool({"api", "analytics", "relay", "housekeeping"} & set(wanted)) or webhooks_reads,
                   migrate="analytics" in wanted)
    failed: list[tuple[str, BaseException]] = []
    store_server = None
    try:
        if serve_store:  # after the migrations: the others query it as soon as it answers
            store_server = start_store_server(settings, serve_store)
        tasks = await start_front_door(rt, stop, wanted, supervised) + start_consumers(rt, stop, wanted)
        rt.roles = {t.get_name(): t for t in tasks if t.get_name() in wanted}  # for /readyz
        started()
        failed = await run_until_stopped(tasks, stop)
    finally:
        if store_server is not None:
            store_server.stop()
        await rt.close()
    if failed:
        raise SystemExit(1)  # let the supervisor (Kubernetes, compose, `postline all`) restart the process


def start_store_server(settings: Settings, serve_store: tuple[socket.socket, str]) -> ChdbHttpServer:
    """Serve this process's chDB over ClickHouse's HTTP interface (the analytics child of `postline all`)."""
    from services.analytics.clickhouse_http import ChdbHttpServer

    sock, url = serve_store[0], urlparse(serve_store[1])
    return ChdbHttpServer(settings.data_dir / "chdb", sock, unquote(url.username or ""), unquote(url.password or "")).start()


async def start_front_door(rt: Runtime, stop: asyncio.Event, wanted: tuple[str, ...], supervised: bool) -> list[asyncio.Task]:
    """The API (HTTP and SMTP submission) when it is wanted, else the ops endpoints (unless supervised)."""
    settings = rt.settings
    if "api" not in wanted:
        if supervised:
            return []
        from services.ops import ops_app

        return [asyncio.create_task(_Server(ops_app(rt), settings).run(stop), name="ops")]
    from services.api.app import asgi_app
    from services.api.context import ApiContext

    token = None if supervised else await rt.ensure_default_workspace()
    app, api = asgi_app(rt), ApiContext.of(rt)
    await api.limits.quota.start()  # Kafka: the other replicas' rate counts read up to now
    await api.shaping.start()  # Kafka: the relays' shaping state, for GET /api/email/shaping
    tasks = [asyncio.create_task(_Server(app, settings, reuse_port=supervised).run(stop), name="api")]
    if settings.submission_port:
        from services.api.submission.server import serve as serve_submission

        tasks.append(asyncio.create_task(serve_submission(api, stop), name="submission"))
    if not supervised:
        announce(settings, token, rt)
    return tasks


def start_consumers(rt: Runtime, stop: asyncio.Event, wanted: tuple[str, ...]) -> list[asyncio.Task]:
    """The consuming roles: relay, housekeeping (the data dir's singleton duties), analytics, webhooks."""
    tasks = []
    if "relay" in wanted:
        from services.relay.runner import Relay

        tasks.append(asyncio.create_task(Relay(rt).run(stop), name="relay"))
    if "housekeeping" in wanted:
        from services.housekeeping import Housekeeping

        tasks.append(asyncio.create_task(Housekeeping(rt).run(stop), name="housekeeping"))
    if "analytics" in wanted:
        from services.analytics.consumer import AnalyticsConsumer

        store = cast("AnalyticsStore", rt.store)  # run_roles started the runtime with its store for analytics
        tasks.append(asyncio.create_task(AnalyticsConsumer(rt.log, store).run(stop), name="analytics"))
        from services.analytics.alerts import AlertWatch

        watch = AlertWatch(rt.log, rt.control, store, rt.settings.alert_interval)
        tasks.append(asyncio.create_task(watch.run(stop), name="alerts"))
    if "webhooks" in wanted:
        from services.webhooks.runner import WebhookService

        tasks.append(asyncio.create_task(WebhookService(rt).run(stop), name="webhooks"))
    return tasks


async def run_until_stopped(tasks: list[asyncio.Task], stop: asyncio.Event) -> list[tuple[str, BaseException]]:
    """Wait for SIGTERM or the first role to end, then let every role finish what it holds;
    returns the roles that failed."""
    await asyncio.wait(tasks + [asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    stop.set()  # SIGTERM, or a role died: every role finishes what it holds, commits, returns
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failed = [(t.get_name(), r) for t, r in zip(tasks, results) if isinstance(r, BaseException)]
    for name, exc in failed:
        log.error("%s stopped: %r", name, exc)
    return failed


def announce(settings: Settings, token: str | None, rt: Runtime) -> None:
    lines = [f"Postline API on {settings.base_url}  (docs: {settings.base_url}/docs)"]
    if token:
        lines.append(f"Admin token (shown once; set POSTLINE_ADMIN_TOKEN to choose your own): {token}")
    elif settings.admin_token:
        lines.append("Admin token: the value of POSTLINE_ADMIN_TOKEN")
    else:
        lines.append("Admin token: printed on the first run (run `postline workspace rotate-token default` for a new one)")
    if settings.submission_port:
        from services.api.submission.tls import trust_lines

        lines.append(f"SMTP submission: {settings.http_host}:{settings.submission_port}  "
                     "(STARTTLS; any user name, a service API key as the password)")
        lines += trust_lines(settings)
    if rt.inbox is not None:
        lines.append(f"Dev inbox: GET {settings.base_url}/dev/inbox  (stored in {rt.inbox.path})")
    print("\n".join(lines), flush=True)
