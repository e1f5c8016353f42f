"""Received mail in the analytics store: the message (``postline.received_emails``) and its
attachments' bytes (``postline.received_attachments``), kept until ``expires_at``.

Why the store and not files: every process that answers the receiving API must read what
the inbound listener stored — several API processes of `postline all` (they reach the
analytics process's chDB over ClickHouse's HTTP interface) and API replicas on other hosts
(ClickHouse server). Large bodies never travel on the event log: ``email.received`` carries
the id, the store holds the bytes (docs/receiving.md).

Every read is scoped by the service and skips expired rows, so expiry holds to the second
whatever the TTL merges have done yet; ``purge_expired`` deletes them for good."""
from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

from shared.store.port import AnalyticsStore

_LIVE = "expires_at > now()"


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _second(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


async def save(store: AnalyticsStore, message: dict[str, Any], contents: dict[str, bytes], expires_at: datetime) -> None:
    """Store one received message (``message``: the JSON the API answers, without bytes) and
    its attachments' bytes (by attachment id); durable when it returns. Attachments go in
    first, so a message that can be read always has its attachments. Storing the same id
    again is absorbed (ReplacingMergeTree on the id, insert dedup tokens)."""
    eid, sid = message["id"], message["service_id"]
    rows = [{"service_id": sid, "email_id": eid, "attachment_id": aid, "expires_at": _second(expires_at),
             "size": len(data), "content": base64.b64encode(data).decode()} for aid, data in contents.items()]
    for row in rows:  # one insert each: a 20 MB message is a few large rows, not one huge batch
        await store.insert("received_attachments", [row], f"received-attachment-{eid}-{row['attachment_id']}")
    await store.insert("received_emails", [{
        "email_id": eid, "time": _ts(datetime.fromisoformat(message["created_at"])), "expires_at": _second(expires_at),
        "workspace_id": message["workspace_id"], "service_id": sid, "from_addr": message["from"],
        "subject": message["subject"], "to_addrs": message["to"], "message_id": message.get("message_id") or "",
        "size": message.get("size", 0), "payload": json.dumps(message)}], f"received-{eid}")


async def find(store: AnalyticsStore, service_id: str, email_id: str) -> dict[str, Any] | None:
    """The stored message of ``service_id`` (None: none, another service's, or expired)."""
    rows = await store.query(
        f"SELECT payload FROM postline.received_emails WHERE service_id = {{s:String}} AND email_id = {{id:String}} "
        f"AND {_LIVE} LIMIT 1", {"s": service_id, "id": email_id})
    return json.loads(rows[0]["payload"]) if rows else None


async def page(store: AnalyticsStore, service_id: str, limit: int, after: str | None = None,
               before: str | None = None) -> tuple[list[dict[str, Any]], bool] | None:
    """Newest first, at most ``limit``: those older than the message ``after`` or newer than
    the message ``before`` (Resend's cursors are ids). ``(messages, has_more)``; None when a
    cursor names no message of the service."""
    where, params = [f"service_id = {{s:String}}", _LIVE], {"s": service_id, "n": limit + 1}
    order = "DESC"
    cursor = after or before
    if cursor:
        found = await store.query(f"SELECT toString(time) AS t FROM postline.received_emails WHERE "
                                  f"service_id = {{s:String}} AND email_id = {{id:String}} LIMIT 1",
                                  {"s": service_id, "id": cursor})
        if not found:
            return None
        where.append(f"(time, email_id) {'<' if after else '>'} (toDateTime64({{t:String}}, 3, 'UTC'), {{id:String}})")
        params.update(t=found[0]["t"], id=cursor)
        order = "DESC" if after else "ASC"
    rows = await store.query(
        f"SELECT payload FROM postline.received_emails WHERE {' AND '.join(where)} "
        f"ORDER BY time {order}, email_id {order} LIMIT 1 BY email_id LIMIT {{n:UInt32}}", params)
    more = len(rows) > limit
    messages = [json.loads(r["payload"]) for r in rows[:limit]]
    if order == "ASC":
        messages.reverse()
    return messages, more


async def attachment(store: AnalyticsStore, service_id: str, email_id: str, attachment_id: str) -> bytes | None:
    """An attachment's bytes (None: none, another service's, or expired)."""
    rows = await store.query(
        f"SELECT content FROM postline.received_attachments WHERE service_id = {{s:String}} AND "
        f"email_id = {{e:String}} AND attachment_id = {{a:String}} AND {_LIVE} LIMIT 1",
        {"s": service_id, "e": email_id, "a": attachment_id})
    return base64.b64decode(rows[0]["content"]) if rows else None


async def purge_expired(store: AnalyticsStore, now: datetime) -> None:
    """Delete what expired by ``now`` (the TTL would, at its next merge; this is at once)."""
    for table in ("received_attachments", "received_emails"):
        await store.execute(f"ALTER TABLE postline.{table} DELETE WHERE expires_at <= toDateTime('{_second(now)}', 'UTC') "
                            "SETTINGS mutations_sync = 1")
