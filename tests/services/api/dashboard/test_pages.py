"""Dashboard pages that the browser tests do not drive: the session cookie's flags,
webhooks (secret once, test event, delete), sandbox recipients and key revocation.
In-process app with the real embedded log and dev inbox."""
from __future__ import annotations

import contextlib

import httpx

from services.api.app import create_app
from services.api.dashboard import session as sess
from tests.services.api.dashboard.support import csrf_of, sign_in
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN


@contextlib.asynccontextmanager
async def dashboard(tmp_path, base_url: str = "http://127.0.0.1:8080", **settings):
    async with api_runtime(tmp_path, webhook_allow_private=True, **settings) as (rt, admin):
        transport = httpx.ASGITransport(app=create_app(rt), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as http:
            yield rt, admin, http


async def test_session_cookie_is_httponly_strict_and_secure_behind_https(tmp_path):
    async with dashboard(tmp_path, "https://mail.acme.test", public_url="https://mail.acme.test") as (rt, admin, http):
        form = await http.get("/signin")
        r = await http.post("/signin", data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN})
        assert r.status_code == 303, r.text
        cookie = next(v for v in r.headers.get_list("set-cookie") if v.startswith(sess.COOKIE))
        flags = {f.strip().lower() for f in cookie.split(";")}
        assert {"httponly", "samesite=strict", "secure", "path=/"} <= flags
        assert f"max-age={sess.LIFETIME}" in flags
    async with dashboard(tmp_path / "plain") as (rt, admin, http):
        form = await http.get("/signin")
        r = await http.post("/signin", data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN})
        assert "secure" not in r.headers["set-cookie"].lower()


async def test_webhook_secret_shown_once_test_event_and_delete(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("hooks")
        r = await http.post(f"/services/{sid}/webhooks", data={"csrf": csrf, "url": "http://127.0.0.1:9/hook",
                                                              "events": ["delivered", "bounced"]})
        assert r.status_code == 201 and "shown only this once" in r.text
        secret = r.text.split('id="new-secret" class="secret">')[1].split("<")[0]
        assert secret.startswith("whsec_")
        listing = await http.get(f"/services/{sid}/webhooks")
        assert secret not in listing.text and "bounced, delivered" in listing.text
        wid = next(iter(rt.control.state.webhooks))
        r = await http.post(f"/services/{sid}/webhooks/{wid}/test", data={"csrf": csrf})
        assert r.status_code == 202 and "A test event is on its way." in r.text
        r = await http.post(f"/services/{sid}/webhooks", data={"csrf": csrf, "url": "ftp://x", "events": ["delivered"]})
        assert r.status_code == 400 and "url:" in r.text
        r = await http.post(f"/services/{sid}/webhooks", data={"csrf": csrf, "url": "http://127.0.0.1:9/h"})
        assert r.status_code == 400 and "events" in r.text
        r = await http.post(f"/services/{sid}/webhooks/{wid}/delete", data={"csrf": csrf})
        assert r.status_code == 303 and wid not in rt.control.state.webhooks


async def test_sandbox_recipient_is_mailed_a_link_and_removed_and_keys_revoked(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("sbx")
        r = await http.post(f"/services/{sid}/sandbox", data={"csrf": csrf, "email": "Dev <dev@acme.test>"})
        assert r.status_code == 201 and "A confirmation link was mailed to dev@acme.test." in r.text
        assert "pending" in r.text
        again = await http.post(f"/services/{sid}/sandbox", data={"csrf": csrf, "email": "dev@acme.test"})
        assert again.status_code == 201 and "less than a minute ago; it still works" in again.text  # nothing mailed
        r = await http.post(f"/services/{sid}/sandbox", data={"csrf": csrf, "email": "nope"})
        assert r.status_code == 400 and "email" in r.text
        rid = next(iter(rt.control.state.sandbox))
        r = await http.post(f"/services/{sid}/sandbox/{rid}/delete", data={"csrf": csrf})
        assert r.status_code == 303 and not rt.control.state.sandbox_of(sid)
        r = await http.post(f"/services/{sid}/keys", data={"csrf": csrf, "name": "ci"})
        key = r.text.split('id="new-key" class="secret">')[1].split("<")[0]
        assert (await http.get("/emails/x", headers={"Api-Key": key})).status_code == 404  # the key works
        kid = next(iter(rt.control.state.api_keys))
        r = await http.post(f"/services/{sid}/keys/{kid}/revoke", data={"csrf": csrf})
        assert r.status_code == 303
        assert (await http.get("/emails/x", headers={"Api-Key": key})).status_code == 401
        assert "No API keys." in (await http.get(f"/services/{sid}/keys")).text


async def test_disable_and_enable_a_service(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("svc")
        r = await http.post(f"/services/{sid}/settings", data={"csrf": csrf, "status": "disabled"})
        assert r.status_code == 303 and rt.control.state.services[sid].status == "disabled"
        page = (await http.get(f"/services/{sid}")).text
        assert 'id="status">disabled' in page and "Enable service" in page
        r = await http.post(f"/services/{sid}/settings", data={"csrf": csrf, "mode": "bogus"})
        assert r.status_code == 400 and "mode" in r.text


async def test_tracking_toggles_and_signed_in_sign_in_page(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        r = await http.get("/signin")
        assert r.status_code == 303 and r.headers["location"] == "/services"
        sid = await admin.service("svc")
        r = await http.post(f"/services/{sid}/settings", data={"csrf": csrf, "tracking": "1", "track_clicks": "1"})
        assert r.status_code == 303
        svc = rt.control.state.services[sid]
        assert svc.track_clicks and not svc.track_opens
        page = (await http.get(f"/services/{sid}")).text
        assert 'name="track_clicks" value="1" checked' in page and 'name="track_opens" value="1">' in page


async def test_bad_filters_are_a_400_page_naming_the_field(tmp_path):
    async with dashboard(tmp_path) as (rt, admin, http):
        await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("svc")
        for path, field in ((f"/services/{sid}?period=1y", "period"), (f"/services/{sid}/messages?status=x", "status"),
                            (f"/services/{sid}/messages?since=2y", "since"),
                            (f"/services/{sid}/messages?cursor=nope", "cursor")):
            r = await http.get(path)
            assert r.status_code == 400 and r.headers["content-type"].startswith("text/html"), path
            assert f"<h1>{field}:" in r.text, path


async def test_webhook_attempts_show_status_code_and_latency_and_replay_one(tmp_path):
    from services.analytics.rows import attempt_row, event_row
    from shared import events as ev

    async with dashboard(tmp_path, with_store=True) as (rt, admin, http):
        csrf = await sign_in(http, ADMIN_TOKEN)
        sid = await admin.service("hooks")
        r = await admin("POST", f"/api/email/services/{sid}/webhooks",
                        json={"url": "http://127.0.0.1:9/hook", "events": ["delivered"]})
        wid = r.json()["id"]
        page = (await http.get(f"/services/{sid}/webhooks/{wid}")).text
        assert "No attempts yet" in page
        delivered = ev.Delivered(workspace_id="default", service_id=sid, email_id="m1", recipient="a@b.co")
        await rt.store.insert("events", [event_row(delivered)], "e1")
        for n, (code, outcome) in enumerate(((500, "retrying"), (200, "delivered"))):
            attempt = ev.WebhookAttempted(workspace_id="default", service_id=sid, webhook_id=wid,
                                          event_id=delivered.id, event_type="delivered", attempt=n + 1,
                                          status_code=code, latency_ms=12.5 + n, outcome=outcome)
            await rt.store.insert("webhook_attempts", [attempt_row(attempt)], f"a{n}")
        page = (await http.get(f"/services/{sid}/webhooks/{wid}")).text
        assert "<td>500</td><td>12.5 ms</td>" in page and "<td>200</td><td>13.5 ms</td>" in page
        assert "retrying" in page and delivered.id in page
        r = await http.post(f"/services/{sid}/webhooks/{wid}/replay", data={"csrf": csrf, "event_id": delivered.id})
        assert r.status_code == 202 and "Replaying 1 event(s)." in r.text
        r = await http.post(f"/services/{sid}/webhooks/{wid}/replay", data={"csrf": csrf, "event_id": "nope"})
        assert r.status_code == 404 and "event nope not found" in r.text  # the refusal's own status
