"""Blocking HTTP clients for the benches that send through a running `postline all`."""
from __future__ import annotations

import concurrent.futures

import httpx


def post_sends(url: str, key: str, body: dict, sends: int, clients: int, codes: dict[int, int]) -> None:
    """``sends`` ``POST /emails`` of ``body`` spread over ``clients`` threads, one keep-alive
    connection each; counts the status codes into ``codes``."""
    def worker(n: int) -> None:
        with httpx.Client(base_url=url, headers={"Api-Key": key}, timeout=60) as c:
            for _ in range(n):
                r = c.post("/emails", json=body)
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, [sends // clients] * clients))
