"""Webhook replay by time range works on both analytics stores (issue 16, defect 4: the
subscribed types, a list, used to be rendered into the SQL for chDB)."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.analytics.rows import event_row
from shared import events as ev
from tests.shared.store.test_query_params import HOSTILE
from tests.support.clickhouse_http import ClickHouseHttp
from tests.support.inproc import api_runtime

pytestmark = pytest.mark.clickhouse


@pytest.mark.parametrize("backend", ["chdb", "clickhouse-server"])
async def test_replay_since_until(tmp_path, backend):
    server = ClickHouseHttp(tmp_path / "ch").start() if backend == "clickhouse-server" else None
    extra = {"clickhouse_url": server.url} if server else {}
    try:
        async with api_runtime(tmp_path / "data", with_store=True, **extra) as (rt, admin):
            sid = await admin.service()
            hook = (await admin("POST", f"/api/email/services/{sid}/webhooks",
                                json={"url": "https://93.184.215.14/hook", "events": ["delivered", "bounced"]})).json()
            now = ev.utcnow()
            rows = []
            for i, (kind, hours_ago) in enumerate([("delivered", 5), ("delivered", 2), ("bounced", 1), ("sent", 1)]):
                cls = {"delivered": ev.Delivered, "bounced": ev.Bounced, "sent": ev.Sent}[kind]
                rows.append(event_row(cls(workspace_id="default", service_id=sid, email_id=f"m{i}",
                                          recipient="ann@example.com", time=now - timedelta(hours=hours_ago))))
            await rt.store.insert("events", rows, "replay-test")
            path = f"/api/email/services/{sid}/webhooks/{hook['id']}/replay"
            since = (now - timedelta(hours=3)).isoformat()
            r = await admin("POST", path, json={"since": since})
            assert r.status_code == 202, r.text
            assert r.json()["events"] == 2  # the delivered and the bounced of the last 3 h; not `sent`
            r = await admin("POST", path, json={"since": since, "until": (now - timedelta(minutes=90)).isoformat()})
            assert r.status_code == 202 and r.json()["events"] == 1, r.text
            # one event by id: only of a type the endpoint subscribed to (it was sent whatever its type)
            sent_id, delivered_id = rows[3]["event_id"], rows[1]["event_id"]
            r = await admin("POST", path, json={"event_id": sent_id})
            assert r.status_code == 400 and r.json()["error"].startswith("event_id: the endpoint is not subscribed to sent"), r.text
            r = await admin("POST", path, json={"event_id": delivered_id})
            assert r.status_code == 202 and r.json()["events"] == 1, r.text
            # a disabled endpoint: a replay or a test would send nothing, so neither is answered 202
            assert (await admin("PATCH", f"/api/email/services/{sid}/webhooks/{hook['id']}",
                                json={"status": "disabled"})).status_code == 200
            for refused in (await admin("POST", path, json={"event_id": delivered_id}),
                            await admin("POST", f"/api/email/services/{sid}/webhooks/{hook['id']}/test")):
                assert refused.status_code == 409 and "disabled" in refused.json()["error"], refused.text
            assert (await admin("PATCH", f"/api/email/services/{sid}/webhooks/{hook['id']}",
                                json={"status": "enabled"})).status_code == 200
            for hostile in HOSTILE:  # an event id reaches the store as a plain value
                r = await admin("POST", path, json={"event_id": hostile})
                assert r.status_code == 404, (hostile, r.text)
            stats = await admin("GET", f"/api/email/services/{sid}/stats", params={"tag": "a\\", "period": "24h"})
            assert stats.status_code == 200, stats.text
            log = await admin("GET", f"/api/email/services/{sid}/messages", params={"to": "a\\\t\n", "tag": "x'"})
            assert log.status_code == 200, log.text
    finally:
        if server:
            server.stop()
