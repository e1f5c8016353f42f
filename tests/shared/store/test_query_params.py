"""Every store query takes hostile filter strings as plain values, on both adapters
(chDB and the clickhouse-connect adapter over ClickHouse's HTTP interface): no error, and
a value matches exactly the row that holds it (issue 16, defect 5)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.analytics.rows import event_row, message_row
from shared import events as ev
from shared.store import queries

pytestmark = pytest.mark.clickhouse
SVC = "svc-h"
HOSTILE = ["a\\", "a\\\\b", "a\tb", "a\nb", "a\rb", "a\0b", "it's", "a'b\\'", "`x`", "\\N", "{x:String}",
           "'; DROP TABLE postline.events; --", "é€😀", "\x1b[0m", "[1,2]", "a\\tb"]


@pytest.fixture
async def store(bare_store):
    await bare_store.migrate()
    return bare_store


def _rows(value: str, i: int):
    """One message to and tagged ``value``, and its ``sent`` event, an hour ago."""
    email_id = f"h{i}"
    t = ev.utcnow() - timedelta(hours=1)
    req = ev.SendRequested(workspace_id="w", service_id=SVC, email_id=email_id, mode="production", to=[value],
                           recipients=[value], subject=value, tags=[value], time=t, **{"from": "a@acme.test"})
    sent = ev.Sent(id=ev.derived_id(email_id, "sent"), workspace_id="w", service_id=SVC, email_id=email_id,
                   recipient=value, tags=[value], time=t)
    return message_row(req), event_row(sent)


async def test_hostile_values_reach_every_query_as_plain_values(store):
    pairs = [_rows(v, i) for i, v in enumerate(HOSTILE)]
    await store.insert("messages", [m for m, _ in pairs], "hostile-m")
    await store.insert("events", [e for _, e in pairs], "hostile-e")
    for i, value in enumerate(HOSTILE):
        stats = await queries.stats(store, SVC, "24h", "hour", value)
        assert stats["totals"]["sent"] == 1, value
        log = await queries.message_log(store, SVC, None, value, value, 50, None)
        assert [m["id"] for m in log["data"]] == [f"h{i}"], value
        assert (await queries.message_log(store, SVC, "sent", value, None, 50, None))["data"], value
        assert await queries.message(store, value, "w") is None
        assert await queries.timeline(store, value, "w") == []
        assert await queries.message(store, f"h{i}", value) is None  # the workspace is a filter too
        rows = await store.query("SELECT count() AS n FROM postline.events FINAL WHERE recipient = {r:String} "
                                 "AND has({types:Array(String)}, type)", {"r": value, "types": [value, "sent"]})
        assert int(rows[0]["n"]) == 1, value
    assert (await queries.message(store, "h0", "w"))["subject"] == HOSTILE[0]
    assert await queries.messages_since(store, SVC, ev.utcnow() - timedelta(days=1)) == len(HOSTILE)

