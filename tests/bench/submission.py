"""SMTP submission throughput and reply latency: `postline all` (embedded) with the dev inbox,
M client connections (STARTTLS + AUTH PLAIN once each, commands pipelined) sending N messages in all; each 250
means the request is fsync'd on the log. The same process is then driven over HTTP with the
same message count and concurrency, for the API's rate beside it."""
from __future__ import annotations

import asyncio
import concurrent.futures
import ssl
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from services.relay.senders.smtp_client import connect, dot_stuffed

from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

MESSAGES, CONNECTIONS = 4000, 16
MESSAGE = (b"From: Acme <hello@acme.test>\r\nTo: bench@example.com\r\nSubject: bench\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=utf-8\r\n\r\nx\r\n")


def _summary(latencies: list[float], elapsed: float, codes: dict) -> dict:
    latencies.sort()
    return {"messages": len(latencies), "codes": codes, "msg_per_s": round(len(latencies) / elapsed, 1),
            "latency_ms": {"p50": round(statistics.median(latencies), 1),
                           "p99": round(latencies[int(len(latencies) * 0.99)], 1)}}


async def smtp_clients(port: int, key: str, messages: int, connections: int) -> dict:
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE  # the data dir's local CA: not what is measured
    latencies: list[float] = []
    codes: dict[str, int] = {}

    payload = dot_stuffed(MESSAGE)

    async def one_connection(n: int) -> None:
        # the relay's own client: it pipelines MAIL, RCPT and DATA when the server offers PIPELINING
        smtp = await connect("127.0.0.1", port, timeout=60, tls="starttls", context=tls, user="bench", password=key)
        for _ in range(n):
            t = time.perf_counter()
            ((code, _),) = await smtp.transaction(b"app@acme.test", [b"bench@example.com"], payload)
            latencies.append((time.perf_counter() - t) * 1000)
            codes[str(code)] = codes.get(str(code), 0) + 1
        await smtp.quit()

    start = time.perf_counter()
    await asyncio.gather(*(one_connection(messages // connections) for _ in range(connections)))
    return _summary(latencies, time.perf_counter() - start, codes)


def http_clients(url: str, key: str, messages: int, connections: int) -> dict:
    body = {"from": "Acme <hello@acme.test>", "to": "bench@example.com", "subject": "bench", "text": "x"}
    latencies: list[float] = []
    codes: dict[str, int] = {}

    def worker(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Api-Key": key}) as c:
            for _ in range(n):
                t = time.perf_counter()
                r = c.post("/emails", json=body)
                latencies.append((time.perf_counter() - t) * 1000)
                codes[str(r.status_code)] = codes.get(str(r.status_code), 0) + 1

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(connections) as pool:
        list(pool.map(worker, [messages // connections] * connections))
    return _summary(latencies, time.perf_counter() - start, codes)


def run(messages: int = MESSAGES, connections: int = CONNECTIONS) -> dict:
    dns, port = DnsServer().start(), free_port()
    proc = PostlineProcess(Path(tempfile.mkdtemp(prefix="postline-bench-smtp-")) / "data",
                           env={"POSTLINE_DNS_SERVER": dns.address, "POSTLINE_SUBMISSION_PORT": str(port),
                                "POSTLINE_RATE_PER_MINUTE": "1000000", "POSTLINE_RATE_PER_DAY": "100000000"}).start()
    try:
        _, key = production_service(Api(proc.url), dns)
        smtp = asyncio.run(smtp_clients(port, key, messages, connections))
        api = http_clients(proc.url, key, messages, connections)
        return {"connections": connections, "smtp": smtp, "api_same_load": api,
                "note": "production service, one recipient; relay, analytics and dev inbox run in the same process; "
                        "clients on the same two cores"}
    finally:
        proc.stop()
        dns.stop()
