"""``postline <role>``: one CLI, the role picks what runs in this process.

all        every service in one process (embedded defaults; what ``make run`` starts)
api        HTTP API and dashboard
relay      delivery (consumes email.requests, delay topics)
webhooks   webhook fan-out
analytics  events into ClickHouse
migrate    apply ClickHouse migrations (and create Kafka topics) then exit
workspace  ``workspace create NAME``: a new workspace and its admin token (shown once)
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from shared.logging import setup_logging
from shared.runtime import Runtime
from shared.settings import load_settings

log = logging.getLogger("postline")
ROLES = ("all", "api", "relay", "webhooks", "analytics")


class _Server:
    """uvicorn without its own signal handling: this process owns SIGTERM/SIGINT."""

    def __init__(self, app, settings):
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

    async def run(self, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self.server.serve())
        await stop.wait()
        self.server.should_exit = True
        await task


async def run_roles(role: str, stop: asyncio.Event, settings=None) -> None:
    """Start ``role`` (or every role for ``all``) and run until ``stop`` is set."""
    settings = settings or load_settings()
    rt = Runtime(settings)
    await rt.start(with_store=role in ("all", "api", "analytics", "relay"), migrate=role in ("all", "analytics"))
    tasks: list[asyncio.Task] = []
    failed: list = []
    try:
        wanted = ROLES[1:] if role == "all" else (role,)
        if "api" in wanted:
            from services.api.app import create_app

            token = await rt.ensure_default_workspace()
            server = _Server(create_app(rt), settings)
            tasks.append(asyncio.create_task(server.run(stop), name="api"))
            announce(settings, token, rt)
        else:
            from services.ops import ops_app

            tasks.append(asyncio.create_task(_Server(ops_app(rt), settings).run(stop), name="ops"))
        if "relay" in wanted:
            from services.relay.runner import Relay

            tasks.append(asyncio.create_task(Relay(rt).run(stop), name="relay"))
        if "analytics" in wanted:
            from services.analytics.consumer import AnalyticsConsumer

            tasks.append(asyncio.create_task(AnalyticsConsumer(rt.log, rt.store).run(stop), name="analytics"))
        if "webhooks" in wanted:
            from services.webhooks.runner import WebhookService

            tasks.append(asyncio.create_task(WebhookService(rt).run(stop), name="webhooks"))
        await asyncio.wait(tasks + [asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # SIGTERM, or a role died: every role finishes what it holds, commits, returns
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [(t.get_name(), r) for t, r in zip(tasks, results) if isinstance(r, BaseException)]
        for name, exc in failed:
            log.error("%s stopped: %r", name, exc)
    finally:
        await rt.close()
    if failed:
        raise SystemExit(1)  # let the supervisor (Kubernetes, compose) restart the process


def announce(settings, token: str | None, rt) -> None:
    lines = [f"Postline API on {settings.base_url}  (docs: {settings.base_url}/docs)"]
    if token:
        lines.append(f"Admin token (shown once; set POSTLINE_ADMIN_TOKEN to choose your own): {token}")
    elif settings.admin_token:
        lines.append("Admin token: the value of POSTLINE_ADMIN_TOKEN")
    else:
        lines.append("Admin token: printed on the first run (run `postline workspace rotate-token default` for a new one)")
    if rt.inbox is not None:
        lines.append(f"Dev inbox: GET {settings.base_url}/dev/inbox  (stored in {rt.inbox.path})")
    print("\n".join(lines), flush=True)


async def _main(role: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="postline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for role in ROLES:
        sub.add_parser(role)
    sub.add_parser("migrate")
    sub.add_parser("rotate-secret-key", help="re-seal DKIM keys and webhook secrets under POSTLINE_SECRET_KEY "
                                             "(from POSTLINE_PREVIOUS_SECRET_KEY); roles stopped")
    ws = sub.add_parser("workspace")
    ws.add_argument("action", choices=["create", "rotate-token"])
    ws.add_argument("name", help="workspace name (create) or id (rotate-token)")
    args = parser.parse_args(argv)
    settings = load_settings()
    setup_logging(settings.log_level)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
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
