"""One HTTP delivery attempt: Standard Webhooks signing, SSRF-checked connect, outcome.

Headers: ``webhook-id`` (the event id: stable across retries and replays),
``webhook-timestamp`` and ``webhook-signature`` (``v1,<base64 HMAC-SHA256>`` over
``id.timestamp.body``, one signature per active secret during a rotation). Redirects are
not followed; the response body is not read beyond 1 KB."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
from standardwebhooks.webhooks import Webhook

from shared.ssrf import BlockedDestination, pinned

CONTEXT_FIELDS = ("id", "v", "time", "workspace_id", "type")


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


async def attempt(client: httpx.AsyncClient, url: str, secrets: list[str], event: dict, allow_private: bool,
                  timeout: float) -> AttemptResult:
    body = body_for(event)
    now = datetime.now(timezone.utc)
    start = time.perf_counter()
    try:
        target = await pinned(url, allow_private)
        headers = {"content-type": "application/json", "user-agent": "Postline-Webhooks/1", **target.headers,
                   "webhook-id": event["id"], "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": signature_header(secrets, event["id"], now, body)}
        resp = await client.post(target.url, content=body.encode(), headers=headers, extensions=target.extensions,
                                 timeout=timeout)
        latency = (time.perf_counter() - start) * 1000
        return AttemptResult(resp.status_code, latency, None if resp.is_success else resp.text[:200],
                             _retry_after(resp.headers.get("retry-after")))
    except (BlockedDestination, ValueError) as exc:
        return AttemptResult(None, (time.perf_counter() - start) * 1000, f"refused: {exc}")
    except httpx.HTTPError as exc:
        return AttemptResult(None, (time.perf_counter() - start) * 1000, f"{type(exc).__name__}: {exc}"[:200])
