"""postline COMMAND: one CLI; the command picks what runs in this process.

Every setting is an environment variable with the POSTLINE_ prefix (see each command's
--help for the ones it reads, and shared/settings.py for all of them).
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from urllib.parse import unquote, urlparse

from shared.process_start import start_process, started
from shared.runtime import Runtime
from shared.settings import load_settings

log = logging.getLogger("postline")
ROLES = ("all", "api", "relay", "webhooks", "analytics")


class _Server:
    """uvicorn without its own signal handling: this process owns SIGTERM/SIGINT."""

    def __init__(self, app, settings, reuse_port: bool = False):
        """``reuse_port``: bind with SO_REUSEPORT so several API processes share the port
        (the kernel spreads connections over them)."""
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self):
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


async def run_roles(role: str, stop: asyncio.Event, settings=None, *, supervised: bool = False,
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
    await rt.start(with_store=bool({"api", "analytics", "relay"} & set(wanted)), migrate="analytics" in wanted)
    failed: list = []
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


def start_store_server(settings, serve_store: tuple[socket.socket, str]):
    """Serve this process's chDB over ClickHouse's HTTP interface (the analytics child of `postline all`)."""
    from services.analytics.clickhouse_http import ChdbHttpServer

    sock, url = serve_store[0], urlparse(serve_store[1])
    return ChdbHttpServer(settings.data_dir / "chdb", sock, unquote(url.username), unquote(url.password)).start()


async def start_front_door(rt, stop: asyncio.Event, wanted, supervised: bool) -> list[asyncio.Task]:
    """The API (HTTP and SMTP submission) when it is wanted, else the ops endpoints (unless supervised)."""
    settings = rt.settings
    if "api" not in wanted:
        if supervised:
            return []
        from services.ops import ops_app

        return [asyncio.create_task(_Server(ops_app(rt), settings).run(stop), name="ops")]
    from services.api.app import create_app
    from services.api.context import ApiContext

    token = None if supervised else await rt.ensure_default_workspace()
    app, api = create_app(rt), ApiContext.of(rt)
    await api.limits.quota.start()  # Kafka: the other replicas' rate counts read up to now
    tasks = [asyncio.create_task(_Server(app, settings, reuse_port=supervised).run(stop), name="api")]
    if settings.submission_port:
        from services.api.submission.server import serve as serve_submission

        tasks.append(asyncio.create_task(serve_submission(api, stop), name="submission"))
    if not supervised:
        announce(settings, token, rt)
    return tasks


def start_consumers(rt, stop: asyncio.Event, wanted) -> list[asyncio.Task]:
    """The consuming roles: relay (with the embedded log's housekeeping), analytics, webhooks."""
    tasks = []
    if "relay" in wanted:
        from services.relay.runner import Relay

        tasks.append(asyncio.create_task(Relay(rt).run(stop), name="relay"))
        if rt.relay_share[0] == 0:
            tasks.extend(log_maintenance(rt, stop))
    if "analytics" in wanted:
        from services.analytics.consumer import AnalyticsConsumer

        tasks.append(asyncio.create_task(AnalyticsConsumer(rt.log, rt.store).run(stop), name="analytics"))
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


def log_maintenance(rt, stop: asyncio.Event) -> list[asyncio.Task]:
    """Housekeeping of the embedded log that exactly one process of an installation runs:
    the one running the relay (in `postline all`, the relay process). The log's retention
    and compaction (shared/log/retention.py) start here; over Kafka the task only waits."""
    from shared.log.retention import run_retention

    return [asyncio.create_task(run_retention(rt.log, rt.settings, stop), name="log-retention")]


def announce(settings, token: str | None, rt) -> None:
    lines = [f"Postline API on {settings.base_url}  (docs: {settings.base_url}/docs)"]
    if token:
        lines.append(f"Admin token (shown once; set POSTLINE_ADMIN_TOKEN to choose your own): {token}")
    elif settings.admin_token:
        lines.append("Admin token: the value of POSTLINE_ADMIN_TOKEN")
    else:
        lines.append("Admin token: printed on the first run (run `postline workspace rotate-token default` for a new one)")
    if settings.submission_port:
        lines.append(f"SMTP submission: {settings.http_host}:{settings.submission_port}  "
                     "(STARTTLS; any user name, a service API key as the password)")
    if rt.inbox is not None:
        lines.append(f"Dev inbox: GET {settings.base_url}/dev/inbox  (stored in {rt.inbox.path})")
    print("\n".join(lines), flush=True)


async def _main(role: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role == "all":
        from services.supervisor import run_all

        await run_all(stop)
    else:
        await run_roles(role, stop)


async def _migrate() -> None:
    settings = load_settings()
    from shared.store import open_store

    if settings.kafka_bootstrap:
        from shared.log.kafka import KafkaLog

        await KafkaLog(settings).ensure_topics()
    store = open_store(settings)
    print(f"ClickHouse schema at version {await store.migrate()}")
    await store.close()


async def _workspace(action: str, name: str) -> None:
    rt = Runtime(load_settings())
    await rt.start(with_store=False)
    try:
        if action == "create":
            wid, token = await rt.create_workspace(name)
        else:
            ws = rt.control.state.workspaces.get(name)
            if ws is None:
                raise SystemExit(f"postline: no workspace {name!r}")
            wid, token = await rt.create_workspace(ws.name, ws.workspace_id)
        print(f"workspace {wid}\nadmin token (shown once): {token}")
    finally:
        await rt.close()


async def _rotate_secret_key() -> None:
    from services.rotate_key import rotate
    from shared.crypto import load_or_create_master_key

    settings = load_settings()
    if not settings.secret_key:
        raise SystemExit("postline: set POSTLINE_SECRET_KEY to the new master key")
    old = load_or_create_master_key(settings.previous_secret_key, settings.data_dir)
    rt = Runtime(settings)
    await rt.start(with_store=False)
    try:
        done = await rotate(rt.control, old, settings.master_key)
        print(f"re-sealed {done['domains']} domains and {done['webhooks']} webhooks under the new master key")
    finally:
        await rt.close()


# Environment variables by concern; each command's --help lists the groups it reads.
ENV = {
    "store": ["POSTLINE_DATA_DIR", "POSTLINE_SECRET_KEY", "POSTLINE_KAFKA_BOOTSTRAP", "POSTLINE_CLICKHOUSE_URL",
              "POSTLINE_LOG_LEVEL",
              "POSTLINE_LOG_APPEND_TIMEOUT", "POSTLINE_DEPENDENCY_LOG_INTERVAL"],
    "http": ["POSTLINE_HTTP_HOST", "POSTLINE_HTTP_PORT", "POSTLINE_PUBLIC_URL"],
    "api": ["POSTLINE_ADMIN_TOKEN", "POSTLINE_SANDBOX_FROM", "POSTLINE_RATE_PER_MINUTE", "POSTLINE_RATE_PER_DAY",
            "POSTLINE_QUOTA_FLUSH_INTERVAL", "POSTLINE_DNS_SERVER", "POSTLINE_HOSTNAME", "POSTLINE_WEBHOOK_ALLOW_PRIVATE",
            "POSTLINE_SUBMISSION_PORT", "POSTLINE_TLS_CERT", "POSTLINE_TLS_KEY", "POSTLINE_CONTROL_CATCH_UP_TIMEOUT"],
    "relay": ["POSTLINE_DELIVERY", "POSTLINE_SMARTHOST", "POSTLINE_SMARTHOST_USER", "POSTLINE_SMARTHOST_PASSWORD",
              "POSTLINE_SMARTHOST_TLS", "POSTLINE_DNS_SERVER", "POSTLINE_HOSTNAME", "POSTLINE_INBOUND_SMTP_PORT",
              "POSTLINE_RELAY_CONCURRENCY", "POSTLINE_RETRY_SCHEDULE", "POSTLINE_QUEUE_LIFETIME", "POSTLINE_MX_PORT",
              "POSTLINE_MX_CONCURRENCY", "POSTLINE_MX_RATE", "POSTLINE_CONTROL_WAIT_TIMEOUT",
              "POSTLINE_LEDGER_CLOCK_MARGIN", "POSTLINE_LOG_RETENTION_REQUESTS", "POSTLINE_LOG_RETENTION_EVENTS",
              "POSTLINE_LOG_RETENTION_DEAD_LETTER", "POSTLINE_LOG_RETENTION_INTERVAL"],
    "webhooks": ["POSTLINE_WEBHOOK_ALLOW_PRIVATE", "POSTLINE_WEBHOOK_TIMEOUT", "POSTLINE_WEBHOOK_RETRY_SCHEDULE"],
    "all": ["POSTLINE_WORKERS", "POSTLINE_RELAY_PROCESSES"],
}
COMMANDS = {
    "all": ("every role in one command on embedded defaults (what `make run` starts)",
            "Runs the API, relay, webhooks and analytics over one data dir: the SQLite log and\n"
            "chDB in POSTLINE_DATA_DIR, and a dev inbox that captures outbound mail unless\n"
            "POSTLINE_DELIVERY says otherwise. Prints the API URL and, on the first run, the\n"
            "admin token. Supervises one process per role (POSTLINE_WORKERS API processes,\n"
            "default: the cores); POSTLINE_WORKERS=1 runs every role in this one process.",
            ("store", "http", "api", "relay", "webhooks", "all")),
    "api": ("the HTTP API, dashboard and docs",
            "Serves the management and send APIs, the dev inbox and /docs on\n"
            "POSTLINE_HTTP_HOST:POSTLINE_HTTP_PORT, and SMTP submission on POSTLINE_SUBMISSION_PORT;\n"
            "appends send requests to the log.", ("store", "http", "api")),
    "relay": ("delivery: builds, DKIM-signs and sends queued mail; receives bounces",
              "Consumes email.requests and the retry topic, delivers over SMTP (or into the dev\n"
              "inbox) and listens for bounces on POSTLINE_INBOUND_SMTP_PORT. Health on the HTTP port.",
              ("store", "http", "relay")),
    "webhooks": ("signed webhook fan-out of lifecycle events",
                 "Consumes email.events and delivers them to subscribed endpoints with retries.\n"
                 "Health on the HTTP port.", ("store", "http", "webhooks")),
    "analytics": ("loads every event into ClickHouse (chDB when POSTLINE_CLICKHOUSE_URL is unset)",
                  "Consumes email.events in batches into the analytics store; owns its schema.\n"
                  "Health on the HTTP port.", ("store", "http")),
    "migrate": ("apply ClickHouse migrations (and create Kafka topics), then exit",
                "Run once per upgrade in distributed mode, before the other roles.", ("store",)),
}


def _env_epilog(groups: tuple[str, ...]) -> str:
    names = list(dict.fromkeys(n for g in groups for n in ENV[g]))
    return "environment variables read:\n" + "\n".join(f"  {n}" for n in names)


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="postline", description=__doc__, formatter_class=raw)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name, (summary, description, groups) in COMMANDS.items():
        sub.add_parser(name, help=summary, description=description, epilog=_env_epilog(groups), formatter_class=raw)
    sub.add_parser("rotate-secret-key", formatter_class=raw,
                   help="re-seal DKIM keys and webhook secrets under a new master key (roles stopped)",
                   description="Re-seals every DKIM private key and webhook secret, sealed under\n"
                               "POSTLINE_PREVIOUS_SECRET_KEY, under POSTLINE_SECRET_KEY. Idempotent; run it\n"
                               "with every role stopped (docs/operations.md).",
                   epilog=_env_epilog(("store",)) + "\n  POSTLINE_PREVIOUS_SECRET_KEY")
    ws = sub.add_parser(
        "workspace", help="workspace create NAME | workspace rotate-token ID: admin tokens (shown once)",
        description="create NAME: a new workspace and its admin token.\n"
                    "rotate-token ID: a new admin token for workspace ID (the first one is `default`);\n"
                    "the old token stops working. Both print the token once; only its hash is stored.\n"
                    "Run it beside a running embedded server with the same POSTLINE_DATA_DIR; every one of\n"
                    "its processes accepts the new token within a second.",
        epilog=_env_epilog(("store",)), formatter_class=raw)
    ws.add_argument("action", choices=["create", "rotate-token"], help="what to do")
    ws.add_argument("name", metavar="NAME_OR_ID", help="workspace name (create) or id (rotate-token, e.g. default)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    start_process()
    if args.cmd in ROLES:
        asyncio.run(_main(args.cmd))
    elif args.cmd == "migrate":
        asyncio.run(_migrate())
    elif args.cmd == "rotate-secret-key":
        asyncio.run(_rotate_secret_key())
    else:
        asyncio.run(_workspace(args.action, args.name))


if __name__ == "__main__":
    sys.exit(main())
