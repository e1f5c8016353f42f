"""One row per event id in ``postline.events`` whatever its time (issue 17): a copy of an
event emitted again later (a resend after a relay failover, the ``sent`` of an
Idempotency-Key retry) is counted once by stats, the message log and the timeline, on
both adapters, for a new install and for one upgraded from before (its rows kept, their ids
recorded so that their later copies collapse)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.analytics.rows import event_row, message_row
from shared import events as ev
from shared.store import queries
from shared.store.migrations import MIGRATIONS

pytestmark = pytest.mark.clickhouse
SVC = "svc-id"


def _message(i: int, hours_ago: float) -> tuple[dict, list[dict]]:
    """Message ``i``: its request row, and its ``sent`` + ``delivered`` rows each twice, the
    copy ``hours_ago`` later (same event id, another time)."""
    email_id, rcpt = f"e{i}", f"u{i}@example.com"
    t = ev.utcnow() - timedelta(hours=hours_ago + 1)
    common = {"workspace_id": "w", "service_id": SVC, "email_id": email_id, "recipient": rcpt}
    req = ev.SendRequested(workspace_id="w", service_id=SVC, email_id=email_id, mode="production", to=[rcpt],
                           recipients=[rcpt], subject="s", time=t, **{"from": "a@acme.test"})
    rows = []
    for later in (timedelta(0), timedelta(hours=hours_ago)):  # a later copy of `sent` is newer than `delivered`
        rows.append(event_row(ev.Sent(id=ev.derived_id(email_id, rcpt, "sent"), time=t + later, **common)))
        rows.append(event_row(ev.Delivered(id=ev.derived_id(email_id, rcpt, "delivered"),
                                           time=t + later + timedelta(seconds=1), smtp_code=250, **common)))
    return message_row(req), rows


async def _load_and_check(store, batches: list[list[dict]], messages: list[dict]) -> None:
    for n, rows in enumerate(batches):
        await queries.insert_events(store, rows, f"batch-{n}")
    await store.insert("messages", messages, "messages")
    stats = await queries.stats(store, SVC, "30d", "day", None)
    assert (stats["totals"]["sent"], stats["totals"]["delivered"]) == (len(messages), len(messages))
    for m in messages:
        timeline = await queries.timeline(store, m["email_id"], "w")
        assert sorted(e["type"] for e in timeline) == ["delivered", "sent"]
    log = await queries.message_log(store, SVC, "delivered", None, None, 50, None)
    assert len(log["data"]) == len(messages)


async def test_a_copy_with_another_time_counts_once(bare_store):
    await bare_store.migrate()
    # copies minutes, hours and days apart (the last across a month boundary or not, either way)
    pairs = [_message(i, hours) for i, hours in enumerate((0.01, 3, 24 * 20))]
    await _load_and_check(bare_store, [[r for _, rows in pairs for r in rows[:2]],
                                       [r for _, rows in pairs for r in rows[2:]]], [m for m, _ in pairs])


async def test_upgrade_records_the_ids_loaded_before_so_their_later_copies_count_once(bare_store):
    s = bare_store
    await s.execute("CREATE DATABASE IF NOT EXISTS postline")
    await s.execute("CREATE TABLE IF NOT EXISTS postline.schema_migrations (version UInt32, applied_at DateTime "
                    "DEFAULT now()) ENGINE = MergeTree ORDER BY version")
    for version, sql, *_ in MIGRATIONS[:4]:  # an install made before issue 17
        await s.execute(sql)
        await s.insert("schema_migrations", [{"version": version}], f"migration-{version}")
    pairs = [_message(i, 2) for i in range(3)]
    first_copies = [r for _, rows in pairs for r in rows[:2]]
    await s.insert("events", first_copies, "before-upgrade")  # loaded the old way
    assert await s.migrate() == MIGRATIONS[-1][0]
    assert await s.migrate() == MIGRATIONS[-1][0]  # a second run changes nothing
    ids = await s.query("SELECT event_id FROM postline.event_ids FINAL")
    assert sorted(r["event_id"] for r in ids) == sorted(r["event_id"] for r in first_copies)
    await _load_and_check(s, [[r for _, rows in pairs for r in rows[2:]]], [m for m, _ in pairs])  # the later copies


async def test_copies_in_one_batch_and_a_redelivered_batch_count_once(bare_store):
    await bare_store.migrate()
    message, rows = _message(0, 0.5)
    await _load_and_check(bare_store, [rows, rows], [message])  # both copies in a batch, then the batch again
