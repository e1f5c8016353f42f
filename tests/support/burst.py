"""Many requests at once, each on its own connection (as separate clients would be): with
several API processes or replicas the kernel, or the round-robin over ``urls``, spreads
them, so duplicates of one Idempotency-Key meet on different processes."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict
    sent: Any  # the body this request carried (a batch: a list)


def burst(urls: list[str], key: str, idempotency_key: str, bodies: list, n: int, path: str = "/emails") -> list[Answer]:
    """``n`` concurrent ``POST path`` with one ``Idempotency-Key``; request ``i`` carries
    ``bodies[i % len(bodies)]`` and goes to ``urls[i % len(urls)]``. All start together
    (a barrier), each on a fresh connection."""
    answers: list[Answer | None] = [None] * n
    ready = threading.Barrier(n)

    def one(i: int) -> None:
        body = bodies[i % len(bodies)]
        with httpx.Client(base_url=urls[i % len(urls)], timeout=60) as client:
            ready.wait()
            r = client.post(path, json=body, headers={"Api-Key": key, "Idempotency-Key": idempotency_key})
            answers[i] = Answer(r.status_code, r.json(), body)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for a in answers if a is not None]


def delivered_ids(sink) -> list[str]:
    """The ``X-Postline-Id`` of every message the sink received, one per message."""
    with sink.lock:
        return [m.data.split(b"X-Postline-Id: ", 1)[1][:36].decode() for m in sink.received
                if b"X-Postline-Id: " in m.data]
