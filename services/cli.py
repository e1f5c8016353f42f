"""postline COMMAND: one CLI; the command picks what runs in this process.

Every setting is an environment variable with the POSTLINE_ prefix (see each command's
--help for the ones it reads, and shared/settings.py for all of them).
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import signal
import socket
import sys

from services.roles import COMMAND_ROLES, ROLES, run_roles
from shared import audit
from shared.process_start import start_process
from shared.runtime import Runtime
from shared.settings import load_settings


async def _main(role: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if role == "all":
        from services.supervisor import run_all

        await run_all(stop)
    else:
        await run_roles(COMMAND_ROLES.get(role, role), stop)


async def _migrate() -> None:
    settings = load_settings()
    from shared.store import open_store

    if settings.kafka_bootstrap:
        from shared.log.kafka import KafkaLog

        await KafkaLog(settings).ensure_topics()
    store = open_store(settings)
    print(f"ClickHouse schema at version {await store.migrate()}")
    await store.close()


def _operator(command: str) -> audit.Context:
    """The audit log's actor of a change made from the command line: ``cli``, named by the
    operating-system user and the command, from this host (shared/audit.py)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = "unknown user"
    return audit.Context(source=socket.gethostname(), actor_type="cli", actor_id=f"{user}: postline {command}")


async def _workspace(action: str, name: str) -> None:
    rt = Runtime(load_settings())
    await rt.start(with_store=False)
    try:
        with audit.acting(_operator(f"workspace {action}")):
            wid, token = await _workspace_change(rt, action, name)
        print(f"workspace {wid}\nadmin token (shown once): {token}")
    finally:
        await rt.close()


async def _workspace_change(rt: Runtime, action: str, name: str) -> tuple[str, str]:
    if action == "create":
        return await rt.create_workspace(name)
    ws = rt.control.state.workspaces.get(name)
    if ws is None:
        raise SystemExit(f"postline: no workspace {name!r}")
    return await rt.create_workspace(ws.name, ws.workspace_id)


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
        with audit.acting(_operator("rotate-secret-key")):
            done = await rotate(rt.control, old, settings.master_key)
        print(f"re-sealed {done['domains']} domains, {done['webhooks']} webhooks and {done['users']} users' TOTP "
              "secrets under the new master key")
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
            "POSTLINE_SUBMISSION_PORT", "POSTLINE_TLS_CERT", "POSTLINE_TLS_KEY", "POSTLINE_CONTROL_CATCH_UP_TIMEOUT",
            "POSTLINE_OIDC_ISSUER", "POSTLINE_OIDC_CLIENT_ID", "POSTLINE_OIDC_CLIENT_SECRET",
            "POSTLINE_OIDC_ALLOWED_DOMAINS", "POSTLINE_ATTACHMENT_FETCH_TIMEOUT",
            "POSTLINE_AUTH_FREE_FAILURES"],
    "relay": ["POSTLINE_DELIVERY", "POSTLINE_SMARTHOST", "POSTLINE_SMARTHOST_USER", "POSTLINE_SMARTHOST_PASSWORD",
              "POSTLINE_SMARTHOST_TLS", "POSTLINE_DNS_SERVER", "POSTLINE_HOSTNAME",
              "POSTLINE_RELAY_CONCURRENCY", "POSTLINE_RETRY_SCHEDULE", "POSTLINE_QUEUE_LIFETIME", "POSTLINE_MX_PORT",
              "POSTLINE_MX_CONCURRENCY", "POSTLINE_MX_RATE", "POSTLINE_CONTROL_WAIT_TIMEOUT",
              "POSTLINE_LEDGER_CLOCK_MARGIN"],
    "housekeeping": ["POSTLINE_INBOUND_SMTP_PORT", "POSTLINE_RETRY_SCHEDULE", "POSTLINE_LOG_RETENTION_REQUESTS",
                     "POSTLINE_LOG_RETENTION_EVENTS", "POSTLINE_LOG_RETENTION_DEAD_LETTER",
                     "POSTLINE_LOG_RETENTION_INTERVAL"],
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
            ("store", "http", "api", "relay", "housekeeping", "webhooks", "all")),
    "api": ("the HTTP API, dashboard and docs",
            "Serves the management and send APIs, the dev inbox and /docs on\n"
            "POSTLINE_HTTP_HOST:POSTLINE_HTTP_PORT, and SMTP submission on POSTLINE_SUBMISSION_PORT;\n"
            "appends send requests to the log.", ("store", "http", "api")),
    "relay": ("delivery: builds, DKIM-signs and sends queued mail; receives bounces",
              "Consumes email.requests, delivers over SMTP (or into the dev inbox) and holds\n"
              "scheduled sends; also runs its data dir's housekeeping (see `housekeeping`):\n"
              "releases them, forwards the retry topics and listens for bounces on\n"
              "POSTLINE_INBOUND_SMTP_PORT. Health on the HTTP port.",
              ("store", "http", "relay", "housekeeping")),
    "housekeeping": ("the duties a data dir needs run once: scheduled sends, retries, bounces, log retention",
                     "Releases the scheduled sends held in POSTLINE_DATA_DIR, forwards the retry topics\n"
                     "back to email.requests, listens for bounces on POSTLINE_INBOUND_SMTP_PORT and\n"
                     "(embedded log) applies retention and compaction; over Kafka the broker does that.\n"
                     "`postline relay` runs this too; `postline all` runs it in its background process.",
                     ("store", "http", "housekeeping")),
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
    main()
