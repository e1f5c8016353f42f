"""The API's own work per send, in-process (``--only api-asgi``): the ASGI app the server runs
(``services.api.app.asgi_app``, the send fast path in front of FastAPI) called directly with
the receipt shape's request, 64 at a time, over a fresh embedded data dir; CPU milliseconds
per send of the whole process (the log's writer thread and its fsync included), best of
``ROUNDS`` rounds. No HTTP server, client or kernel sockets: what a change to the send path
moves, without the ±15 % the loopback benches swing by on this machine."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TextIO, cast

from starlette.types import ASGIApp, Message, Scope

from services.api import limits
from services.api.app import asgi_app
from shared.logging import setup_logging
from tests.bench.shapes import BY_NAME
from tests.support.inproc import api_runtime, ready_service

ROUNDS, SENDS, AT_ONCE = 5, 3200, 64


def run() -> dict:
    """The section's numbers; the process's logging and the sandbox cap are as they were after it."""
    root = logging.getLogger()
    handlers, level, cap = root.handlers[:], root.level, limits.SANDBOX_DAY
    data = Path(tempfile.mkdtemp(prefix="postline-bench-asgi-"))
    try:
        with open(os.devnull, "w") as devnull:
            return asyncio.run(_run(data, devnull))
    finally:
        root.handlers[:], limits.SANDBOX_DAY = handlers, cap
        root.setLevel(level)
        shutil.rmtree(data, ignore_errors=True)


async def _run(data: Path, devnull: TextIO) -> dict:
    limits.SANDBOX_DAY = 10**9  # a sandbox service (no DNS needed), without its daily cap
    async with api_runtime(data, rate_per_minute=10**7, rate_per_day=10**9) as (rt, admin):
        setup_logging("info")  # the access log, as the API writes it (into /dev/null here)
        cast(logging.StreamHandler, logging.getLogger().handlers[0]).setStream(devnull)
        _, key = await ready_service(rt, admin)
        app = asgi_app(rt)  # what the server runs
        body = BY_NAME["receipt_5kb"].request(0, "acme.test")
        raw = json.dumps({**body, "to": "ann@example.com"}).encode()  # the sandbox's verified recipient
        headers = [(b"content-type", b"application/json"), (b"api-key", key.encode()),
                   (b"content-length", str(len(raw)).encode())]
        codes: dict[int, int] = {}
        rounds = []
        for r in range(ROUNDS + 1):  # the first round warms up
            start = time.process_time()
            for _ in range(SENDS // AT_ONCE):
                await asyncio.gather(*[_post(app, headers, raw, codes) for _ in range(AT_ONCE)])
            if r:
                rounds.append((time.process_time() - start) * 1000 / (SENDS // AT_ONCE * AT_ONCE))
        return {"sends_per_round": SENDS, "rounds": ROUNDS, "cpu_ms_per_send_best": round(min(rounds), 3),
                "cpu_ms_per_send_median": round(sorted(rounds)[len(rounds) // 2], 3), "status_codes": codes,
                "shape": "receipt_5kb"}


async def _post(app: ASGIApp, headers: list[tuple[bytes, bytes]], raw: bytes, codes: dict[int, int]) -> None:
    scope: Scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/emails", "raw_path": b"/emails", "query_string": b"", "root_path": "", "headers": list(headers),
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
    given = False

    async def receive() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        return {}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            codes[message["status"]] = codes.get(message["status"], 0) + 1

    await app(scope, receive, send)
