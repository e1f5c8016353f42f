"""Tracking endpoints under load: the open pixel and click redirects of a running
`postline all` (embedded log, dev inbox; relay, analytics and webhooks in the same process).

Every request carries a distinct (email, recipient) token, so none is absorbed by the
per-window dedupe: each one verifies its token, appends an event (group-committed) and
answers. The load generator is a small keep-alive HTTP/1.1 client on asyncio streams
(httpx would spend more CPU than the server on this 2-core machine)."""
from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from shared.crypto import load_or_create_master_key
from shared.tracking import Tokens
from tests.support.postline import Api, PostlineProcess

REQUESTS, CONNECTIONS = 20_000, 64
AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


async def _connection(port: int, paths: list[str], latencies: list[float], codes: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for path in paths:
            start = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {AGENT}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000)
            code = int(head[9:12])
            codes[code] = codes.get(code, 0) + 1
    finally:
        writer.close()


async def load(port: int, paths: list[str], connections: int) -> dict:
    latencies: list[float] = []
    codes: dict[int, int] = {}
    share = [paths[i::connections] for i in range(connections)]
    start = time.perf_counter()
    await asyncio.gather(*(_connection(port, s, latencies, codes) for s in share))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "connections": connections, "status_codes": codes,
            "req_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": {"p50": round(statistics.median(latencies), 2),
                           "p99": round(latencies[int(len(latencies) * 0.99)], 2)}}


def run(requests: int = REQUESTS, connections: int = CONNECTIONS, role: str = "all") -> dict:
    """``role="all"``: everything in one process (``make run``); ``role="api"``: the API
    alone on the embedded log, as an API pod of the distributed mode runs."""
    data = Path(tempfile.mkdtemp(prefix="postline-bench-tracking-")) / "data"
    proc = PostlineProcess(data, role=role).start()
    try:
        api = Api(proc.url)
        sid = api.create_service("bench")
        tokens = Tokens(load_or_create_master_key(proc.env["POSTLINE_SECRET_KEY"], data))
        emails = [str(uuid.uuid4()) for _ in range(requests)]
        pixels = [f"/t/o/{tokens.make('open', e, sid, f'r{i}@example.com')}" for i, e in enumerate(emails)]
        clicks = [f"/t/c/{tokens.make('click', e, sid, f'r{i}@example.com', 0, 'https://shop.example/p?id=' + str(i))}"
                  for i, e in enumerate(emails)]
        asyncio.run(load(proc.port, pixels[:500], 16))  # warm-up (connections, caches)
        return {"pixel": asyncio.run(load(proc.port, pixels[500:], connections)),
                "click": asyncio.run(load(proc.port, clicks, connections)),
                "note": f"one `postline {role}` process; the load generator shares the same 2 cores; every request "
                        "appends an event"}
    finally:
        proc.stop()
