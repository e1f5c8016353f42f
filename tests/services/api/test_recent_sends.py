"""What the API keeps per send for ``GET /emails/{id}`` is a small summary, never the body
or the attachments (issue 16, defect 7: RSS grew by the size of the last 20,000 sends)."""
from __future__ import annotations

import base64
import json

from services.api.context import ApiContext
from tests.services.api.test_bad_input import SEND, ready_service
from tests.support.inproc import api_runtime


async def test_a_large_send_is_remembered_as_a_small_summary(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        body = {**SEND, "subject": "big one", "text": "x" * 1_000_000, "html": "<p>" + "y" * 500_000 + "</p>",
                "headers": {"X-Big": "z" * 900},
                "attachments": [{"filename": "a.bin", "content_base64": base64.b64encode(b"\0" * 300_000).decode()}]}
        r = await admin.http.post("/emails", json=body, headers={"Api-Key": key})
        assert r.status_code == 200, r.text
        email_id = r.json()["id"]
        kept = ApiContext.of(rt).recent.get(email_id)
        assert len(json.dumps(kept)) < 4096
        assert "x" * 100 not in json.dumps(kept) and "text" not in kept[0] and "attachments" not in kept[0]
        got = await admin.http.get(f"/emails/{email_id}", headers={"Api-Key": key})
        assert got.status_code == 200, got.text
        assert got.json()["subject"] == "big one" and got.json()["to"] == SEND["to"]
        assert got.json()["recipients"] == {"ann@example.com": {"status": "queued"}}
