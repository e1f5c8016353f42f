"""Dev-inbox tenant isolation across the API processes of `postline all`: a mail whose
message another process accepted, before analytics has loaded it, is known from the request
on the embedded log — to its own workspace only."""
from __future__ import annotations

from types import SimpleNamespace

from services.api.inbox_access import own_email_ids
from shared import events as ev
from shared.log.sqlite import SqliteLog


async def test_a_message_only_on_the_log_belongs_to_its_workspace_alone(tmp_path):
    lg = SqliteLog(tmp_path / "log.sqlite3")
    await lg.start()
    req = ev.SendRequested(workspace_id="w1", service_id="s", email_id="e-1", mode="sandbox", to=["a@example.com"],
                           recipients=["a@example.com"], subject="s", **{"from": "a@acme.test"})
    await lg.append(ev.Topic.REQUESTS, req.email_id, ev.encode(req))
    rt = SimpleNamespace(recent=None, store=None, log=lg)  # another process accepted it; analytics has nothing yet
    assert await own_email_ids(rt, "w1", ["e-1", "e-unknown"]) == {"e-1"}
    assert await own_email_ids(rt, "w2", ["e-1"]) == set()
    await lg.close()
