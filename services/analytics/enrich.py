"""Tracking events get their message's ``from``, ``subject``, ``tags`` and ``template_id`` before loading.

``opened``, ``clicked`` and ``unsubscribed`` are emitted by the public endpoints from the
signed token alone (the hot path looks nothing up), so they arrive without them. Filled in
here from ``postline.messages``, one query per batch, so ``stats?tag=`` counts them and the
timeline shows them. A message not loaded yet leaves the row as it is (no retry: the
event still counts, only not under its tags)."""
from __future__ import annotations

import json

from shared import events as ev
from shared.store import queries
from shared.store.port import AnalyticsStore


async def add_message_fields(store: AnalyticsStore, rows: list[dict]) -> None:
    """Fill ``tags`` and ``template_id`` (columns and payload), ``from`` and ``subject`` of tracking rows in place."""
    todo = [r for r in rows if r["type"] in ev.TRACKING_TYPES]
    if not todo:
        return
    payloads = [json.loads(r["payload"]) for r in todo]
    await describe_tracking(store, payloads)
    for row, payload in zip(todo, payloads):
        row["tags"], row["template_id"], row["payload"] = payload["tags"], payload["template_id"] or "", json.dumps(payload)


async def describe_tracking(store: AnalyticsStore, payloads: list[dict]) -> None:
    """Fill ``from``, ``subject``, ``tags`` and ``template_id`` of tracking event payloads (as
    JSON) in place from their messages, one query for all; the webhooks service sends them
    so too (every event's ``data`` has them: docs/tracking.md). Others, and those whose message is
    not loaded yet, are left as they are."""
    todo = [p for p in payloads if p.get("type") in ev.TRACKING_TYPES]
    if not todo:
        return
    found = await queries.message_fields(store, list({p["service_id"] for p in todo}), list({p["email_id"] for p in todo}))
    messages = {m["email_id"]: m for m in found}
    for payload in todo:
        m = messages.get(payload["email_id"])
        if m is None:
            continue
        payload["tags"] = payload.get("tags") or m["tags"]
        payload["from"] = payload.get("from") or m["from_addr"]
        payload["subject"] = payload.get("subject") or m["subject"]
        payload["template_id"] = payload.get("template_id") or m["template_id"] or None


async def add_delivery_path(store: AnalyticsStore, rows: list[dict]) -> None:
    """Give ``complained`` rows the ``provider`` and ``source_ip`` of the delivery they are about
    (a feedback-loop report carries neither), so complaint rates count per provider (docs/analytics.md).
    Only the columns: the payload stays the event as emitted. A delivery not loaded yet leaves them ''."""
    todo = [r for r in rows if r["type"] == "complained" and not r.get("provider")]
    if not todo:
        return
    found = await queries.delivery_paths(store, list({r["service_id"] for r in todo}), list({r["email_id"] for r in todo}))
    paths = {(f["email_id"], f["recipient"]): f for f in found}
    for row in todo:
        path = paths.get((row["email_id"], row["recipient"]))
        if path is not None:
            row["provider"], row["source_ip"] = path["provider"], path["source_ip"]
