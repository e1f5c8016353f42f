"""API send latency and throughput: `postline all` (embedded) with the dev inbox, 16
concurrent HTTP clients posting to /emails; each 200 means the request is fsync'd on the log."""
from __future__ import annotations

import concurrent.futures
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

SENDS, CLIENTS = 4000, 16


def run() -> dict:
    dns = DnsServer().start()
    proc = PostlineProcess(Path(tempfile.mkdtemp(prefix="postline-bench-api-")) / "data",
                           env={"POSTLINE_DNS_SERVER": dns.address,
                                "POSTLINE_RATE_PER_MINUTE": "1000000", "POSTLINE_RATE_PER_DAY": "100000000"}).start()
    try:
        api = Api(proc.url)
        _, key = production_service(api, dns)
        body = {"from": "a@acme.test", "to": "bench@example.com", "subject": "bench", "text": "x"}
        latencies: list[float] = []
        codes: dict[int, int] = {}

        def worker(n: int) -> None:
            with httpx.Client(base_url=proc.url, headers={"Api-Key": key}) as c:
                for _ in range(n):
                    t = time.perf_counter()
                    r = c.post("/emails", json=body)
                    latencies.append((time.perf_counter() - t) * 1000)
                    codes[r.status_code] = codes.get(r.status_code, 0) + 1

        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
            list(pool.map(worker, [SENDS // CLIENTS] * CLIENTS))
        elapsed = time.perf_counter() - start
        latencies.sort()
        return {"sends": len(latencies), "clients": CLIENTS, "status_codes": codes,
                "req_per_s": round(len(latencies) / elapsed, 1),
                "latency_ms": {"p50": round(statistics.median(latencies), 1),
                               "p99": round(latencies[int(len(latencies) * 0.99)], 1)},
                "note": "production service; relay, analytics and dev inbox run in the same process"}
    finally:
        proc.stop()
        dns.stop()
