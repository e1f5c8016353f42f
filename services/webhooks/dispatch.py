"""One HTTP delivery attempt: Standard Webhooks signing, SSRF-checked connect, outcome.

Headers: ``webhook-id`` (the event id: stable across retries and replays),
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body``, one signature per active secret during a rotation). Redirects are
not followed; the response body is not read beyond 1 KB, and ``timeout`` bounds the whole
attempt (an endpoint that drips bytes does not hold a slot for longer)."""
from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
from standardwebhooks.webhooks import Webhook

from shared.ssrf import BlockedDestination, pinned

CONTEXT_FIELDS = ("id", "v", "time", "workspace_id", "type")
BODY_READ = 1024  # bytes of an endpoint's answer kept (for the attempt's error)


class Clients:
    """An HTTP client (its own connection pool) per destination: requests go to the address
    the SSRF check resolved (shared/ssrf.py), and httpx pools connections by address, so two
    endpoints on one address (a CDN, a load balancer) would share a TLS session whose
    certificate was verified for the first one's name only. At most ``max_hosts`` clients;
    the least recently used one is closed ``close_after`` seconds later (longer than an
    attempt: a request may still be running on it)."""

    def __init__(self, max_hosts: int = 256, close_after: float = 60.0, **options: object) -> None:
        self.max_hosts, self.close_after, self.options = max_hosts, close_after, options
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def for_url(self, url: str) -> httpx.AsyncClient:
        parsed = httpx.URL(url)
        key = f"{parsed.scheme}://{parsed.netloc.decode()}"
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = httpx.AsyncClient(**self.options)  # type: ignore[arg-type]
            if len(self._clients) > self.max_hosts:
                _, old = self._clients.popitem(last=False)
                task = asyncio.get_running_loop().create_task(self._close_later(old))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._clients.move_to_end(key)
        return client

    async def _close_later(self, client: httpx.AsyncClient) -> None:
        try:
            await asyncio.sleep(self.close_after)
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for task in self._closing:
            task.cancel()  # its client closes now
        await asyncio.gather(*(c.aclose() for c in clients), *self._closing, return_exceptions=True)


@dataclass
class AttemptResult:
    status_code: int | None
    latency_ms: float
    error: str | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def body_for(event: dict) -> str:
    """``{"type", "created_at", "data": {email_id, service_id, recipient, from, subject, tags, …}}``."""
    data = {k: v for k, v in event.items() if k not in CONTEXT_FIELDS}
    return json.dumps({"type": event["type"], "created_at": event["time"], "data": data}, separators=(",", ":"))


def signature_header(secrets: list[str], msg_id: str, when: datetime, body: str) -> str:
    return " ".join(Webhook(s).sign(msg_id, when, body) for s in secrets)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def attempt(clients: Clients, url: str, secrets: list[str], event: dict, allow_private: bool,
                  timeout: float) -> AttemptResult:
    body = body_for(event)
    now = datetime.now(timezone.utc)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):  # the whole attempt, not each read
            target = await pinned(url, allow_private)
            headers = {"content-type": "application/json", "user-agent": "Postline-Webhooks/1", **target.headers,
                       "webhook-id": event["id"], "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature_header(secrets, event["id"], now, body)}
            client = clients.for_url(url)
            request = client.build_request("POST", target.url, content=body.encode(), headers=headers,
                                           extensions=target.extensions, timeout=timeout)
            resp = await client.send(request, stream=True)
            try:  # read to its end when short, so that the connection can be used again
                answer = b""
                async for chunk in resp.aiter_bytes():  # decoded (an error page may come gzipped)
                    answer += chunk
                    if len(answer) > BODY_READ:
                        break
            finally:
                await resp.aclose()
        latency = (time.perf_counter() - start) * 1000
        return AttemptResult(resp.status_code, latency,
                             None if resp.is_success else answer[:BODY_READ].decode("utf-8", "replace")[:200],
                             _retry_after(resp.headers.get("retry-after")))
    except (BlockedDestination, ValueError) as exc:
        return AttemptResult(None, (time.perf_counter() - start) * 1000, f"refused: {exc}")
    except TimeoutError:
        return AttemptResult(None, (time.perf_counter() - start) * 1000, f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return AttemptResult(None, (time.perf_counter() - start) * 1000, f"{type(exc).__name__}: {exc}"[:200])
