"""A message's last event as ``GET /emails`` lists it (``queries.email_page``, SQL) is the one
``GET /emails/{id}`` shows (``queries.last_event_type`` over the timeline, Python), on both
adapters: held and canceled messages included, ties within a millisecond (the store keeps
milliseconds) broken the same way, ``unsubscribed`` (no Resend name) left out."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.analytics.rows import event_row, message_row
from shared import events as ev
from shared.store import queries

pytestmark = pytest.mark.clickhouse
SVC = "svc-last"
T0 = ev.utcnow().replace(microsecond=100_000) - timedelta(hours=1)


def _at(ms: float) -> dict:
    return {"time": T0 + timedelta(milliseconds=ms)}


def _message(email_id: str, recipients: list[str], **fields) -> ev.SendRequested:
    return ev.SendRequested(workspace_id="w", service_id=SVC, email_id=email_id, mode="production", to=["a@x.test"],
                            recipients=recipients, time=T0, **{"from": "a@acme.test"}, **fields)


def _event(cls, email_id: str, n: int, ms: float, **fields) -> ev.Event:
    return cls(id=f"{email_id}-{n}", workspace_id="w", service_id=SVC, email_id=email_id, recipient="a@x.test",
               **_at(ms), **fields)


# email id → (message, its events, the last event both must say)
CASES = {
    "queued": (_message("queued", ["a@x.test"]), [], "queued"),
    "not-held-yet": (_message("not-held-yet", ["a@x.test"], scheduled_at=T0 + timedelta(hours=2)), [], "scheduled"),
    "nobody": (_message("nobody", []), [], "failed"),
    "delivered": (_message("delivered", ["a@x.test"]),
                  [(ev.Sent, 0, {}), (ev.Delivered, 900, {})], "delivered"),
    "held": (_message("held", ["a@x.test"], scheduled_at=T0 + timedelta(hours=2)),
             [(ev.Scheduled, 50, {"scheduled_at": T0 + timedelta(hours=2)})], "scheduled"),
    # canceled wins whatever comes after it on the timeline
    "canceled": (_message("canceled", ["a@x.test"], scheduled_at=T0 + timedelta(hours=2)),
                 [(ev.Scheduled, 50, {"scheduled_at": T0 + timedelta(hours=2)}), (ev.Canceled, 90, {}),
                  (ev.Scheduled, 120, {"scheduled_at": T0 + timedelta(hours=3)})], "canceled"),
    "suppressed": (_message("suppressed", []), [(ev.Dropped, 0, {"reason": "suppressed"})], "dropped"),
    "deferred": (_message("deferred", ["a@x.test"]), [(ev.Sent, 0, {}), (ev.Deferred, 400, {})], "deferred"),
    # same time (the relay stamps both with the request's): the later in LAST_EVENT_ORDER
    "tie": (_message("tie", ["a@x.test"]), [(ev.Dropped, 0, {"reason": "suppressed"}), (ev.Sent, 0, {})], "dropped"),
    # 0.6 ms apart but in one millisecond: a tie too, on both sides
    "same-ms": (_message("same-ms", ["a@x.test"]),
                [(ev.Sent, 0, {}), (ev.Bounced, 500.2, {}), (ev.Delivered, 500.8, {})], "bounced"),
    "opened": (_message("opened", ["a@x.test"]),
               [(ev.Sent, 0, {}), (ev.Delivered, 100, {}), (ev.Opened, 200, {}), (ev.Unsubscribed, 300, {})], "opened"),
}


@pytest.fixture
async def store(bare_store):
    await bare_store.migrate()
    for email_id, (msg, events, _) in CASES.items():
        await bare_store.insert("messages", [message_row(msg)], f"m-{email_id}")
        rows = [event_row(_event(cls, email_id, n, ms, **fields)) for n, (cls, ms, fields) in enumerate(events)]
        if rows:
            await bare_store.insert("events", rows, f"e-{email_id}")
    return bare_store


async def test_the_list_and_the_timeline_pick_the_same_last_event(store):
    rows, more = await queries.email_page(store, SVC, 100)
    listed = {r["email_id"]: r["last_event"] for r in rows}
    assert not more and listed == {email_id: expected for email_id, (_, _, expected) in CASES.items()}
    for email_id, (msg, _, expected) in CASES.items():
        timeline = await queries.timeline(store, email_id, "w")
        scheduled_at = msg.scheduled_at.isoformat() if msg.scheduled_at else None
        assert queries.last_event_type(timeline, bool(msg.recipients), scheduled_at) == expected, email_id
