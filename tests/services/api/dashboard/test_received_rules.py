"""The received-mail page's routing rules (docs/receiving.md): added and deleted through the
dashboard's forms, the same control records the admin API lists; bad input is a 400 page
naming what is wrong, and nothing is saved. In-process app (real embedded log and chDB)."""
from __future__ import annotations

import contextlib

import httpx

from services.api.app import create_app
from tests.services.api.dashboard.support import sign_in
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN


@contextlib.asynccontextmanager
async def signed_in(rt):
    transport = httpx.ASGITransport(app=create_app(rt), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        yield http, await sign_in(http, ADMIN_TOKEN)


async def test_rules_are_added_listed_and_deleted_from_the_received_page(tmp_path):
    async with api_runtime(tmp_path, with_store=True, webhook_allow_private=True) as (rt, admin):
        sid, other = await admin.service("inbox"), await admin.service("other")
        hook = (await admin("POST", f"/api/email/services/{sid}/webhooks",
                            json={"url": "http://127.0.0.1:9/support", "events": ["email.received"]})).json()["id"]
        foreign = (await admin("POST", f"/api/email/services/{other}/webhooks",
                               json={"url": "http://127.0.0.1:9/other", "events": ["email.received"]})).json()["id"]
        api_rules = f"/api/email/services/{sid}/receiving-rules"
        async with signed_in(rt) as (http, csrf):
            page = f"/services/{sid}/received"
            r = await http.post(f"{page}/rules", data={"csrf": csrf, "pattern": "not an address"})
            assert r.status_code == 400 and "pattern" in r.text
            r = await http.post(f"{page}/rules", data={"csrf": csrf, "pattern": "help@acme.test", f"webhook_{foreign}": "on"})
            assert r.status_code == 400 and "is not a webhook of this service" in r.text
            assert (await admin("GET", api_rules)).json()["data"] == []  # nothing saved by a refused form

            r = await http.post(f"{page}/rules", data={"csrf": csrf, "pattern": "Support+*@Acme.test", f"webhook_{hook}": "on"})
            assert r.status_code == 303 and r.headers["location"] == page
            [rule] = (await admin("GET", api_rules)).json()["data"]
            assert rule["pattern"] == "support+*@acme.test" and rule["webhook_ids"] == [hook] and rule["forward_to"] == []
            shown = (await http.get(page)).text
            assert "support+*@acme.test" in shown and "http://127.0.0.1:9/support" in shown

            r = await http.post(f"{page}/rules/{rule['id']}/delete", data={"csrf": csrf})
            assert r.status_code == 303
            assert (await admin("GET", api_rules)).json()["data"] == []
            r = await http.post(f"{page}/rules/{rule['id']}/delete", data={"csrf": csrf})
            assert r.status_code == 404  # already gone
