"""Dashboard security: no session → sign-in and no data; one workspace never sees another's
(404); forms without their CSRF token → 403; HTML in names, subjects and recipients is
escaped. In-process app (real embedded log, chDB, dev inbox file), no browser needed."""
from __future__ import annotations

import contextlib
import time
from datetime import timedelta

import httpx
import pytest

from services.analytics.rows import event_row, message_row
from services.api.app import create_app
from services.api.dashboard import session as sess
from shared import events as ev
from shared.store import received
from tests.services.api.dashboard.support import csrf_of, sign_in
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN

EVIL = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@contextlib.asynccontextmanager
async def client(rt):
    transport = httpx.ASGITransport(app=create_app(rt), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
        yield http


async def seed(rt, admin) -> dict:
    """Workspace A (the default one) with one of everything; returns the ids."""
    sid = await admin.service(EVIL)
    ids = {"sid": sid}
    r = await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})
    ids["did"] = r.json()["id"]
    r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": EVIL})
    ids["kid"] = r.json()["id"]
    r = await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "dev@acme.test"})
    ids["rid"] = r.json()["id"]
    r = await admin("POST", f"/api/email/services/{sid}/webhooks",
                    json={"url": "http://127.0.0.1:9/hook", "events": ["delivered"]})
    ids["wid"] = r.json()["id"]
    await admin("POST", f"/api/email/services/{sid}/suppressions", json={"email": "gone@example.com"})
    # a message with HTML in its subject and recipient, as analytics would have loaded it
    req = ev.SendRequested(workspace_id="default", service_id=sid, email_id=ev.new_id(), mode="sandbox",
                           to=[f'"{EVIL}" <ann@example.com>'], recipients=["ann@example.com"], subject=EVIL,
                           tags=["t"], **{"from": "Acme <hello@acme.test>"})
    sent = ev.Delivered(workspace_id="default", service_id=sid, email_id=req.email_id, recipient="ann@example.com",
                        smtp_code=250, smtp_reply=EVIL)
    await rt.store.insert("messages", [message_row(req)], f"m-{req.email_id}")
    await rt.store.insert("events", [event_row(sent)], f"e-{req.email_id}")
    ids["eid"] = req.email_id
    raw = (f"From: hello@acme.test\r\nTo: ann@example.com\r\nSubject: secret subject of A\r\n"
           f"X-Postline-Id: {req.email_id}\r\nContent-Type: text/plain\r\n\r\nhello\r\n").encode()
    ids["mid"] = await rt.inbox.store("hello@acme.test", ["ann@example.com"], raw)
    # received mail with HTML in its fields, as the inbound listener stores it
    ids["reid"] = ev.new_id()
    await received.save(rt.store, {"id": ids["reid"], "workspace_id": "default", "service_id": sid,
                                   "created_at": ev.utcnow().isoformat(), "from": EVIL, "to": [EVIL], "cc": [],
                                   "reply_to": [], "received_for": ["help@acme.test"], "subject": EVIL, "html": EVIL,
                                   "text": EVIL, "headers": {"X-Evil": EVIL}, "message_id": EVIL, "in_reply_to": None,
                                   "attachments": [{"id": "a1", "filename": EVIL, "content_type": "text/html",
                                                    "content_id": None, "content_disposition": "attachment", "size": 4}],
                                   "verdicts": {"spf": EVIL, "dkim": "pass", "dmarc": "none", "dmarc_policy": None}},
                        {"a1": b"<b>"}, ev.utcnow() + timedelta(days=1))
    return ids


PAGES = ["/services", "/services/{sid}", "/services/{sid}?period=30d", "/services/{sid}/domains",
         "/services/{sid}/domains/{did}", "/services/{sid}/keys", "/services/{sid}/sandbox",
         "/services/{sid}/webhooks", "/services/{sid}/webhooks/{wid}", "/services/{sid}/suppressions",
         "/services/{sid}/suppressions?q=gone", "/services/{sid}/messages", "/services/{sid}/messages/{eid}",
         "/inbox", "/inbox/{mid}", "/services/{sid}/received", "/services/{sid}/received/{reid}"]
FORMS = ["/signout", "/services", "/services/{sid}/settings", "/services/{sid}/domains",
         "/services/{sid}/domains/{did}/verify", "/services/{sid}/domains/{did}/delete", "/services/{sid}/keys",
         "/services/{sid}/keys/{kid}/revoke", "/services/{sid}/sandbox", "/services/{sid}/sandbox/{rid}/delete",
         "/services/{sid}/webhooks", "/services/{sid}/webhooks/{wid}/test", "/services/{sid}/webhooks/{wid}/replay",
         "/services/{sid}/webhooks/{wid}/delete", "/services/{sid}/suppressions",
         "/services/{sid}/suppressions/remove", "/services/{sid}/domains/{did}/receiving"]


@pytest.fixture
async def world(tmp_path):
    async with api_runtime(tmp_path, with_store=True, webhook_allow_private=True) as (rt, admin):
        yield rt, await seed(rt, admin)


def test_every_dashboard_route_is_listed():
    """New pages must join PAGES/FORMS above, so the checks below cover them."""
    from services.api.dashboard.pages import (auth, domains, inbox, keys, messages, received, sandbox, services,
                                              suppressions, webhooks)

    paths = {(m, r.path) for mod in (auth, domains, inbox, keys, messages, received, sandbox, services, suppressions,
                                     webhooks)
             for r in mod.router.routes for m in r.methods}
    listed = {("GET", p.split("?")[0]) for p in PAGES} | {("POST", p) for p in FORMS}
    listed |= {("GET", "/"), ("GET", "/signin"), ("POST", "/signin")}
    normal = {(m, p.replace("{service_id}", "{sid}").replace("{domain_id}", "{did}").replace("{key_id}", "{kid}")
               .replace("{recipient_id}", "{rid}").replace("{webhook_id}", "{wid}").replace("{email_id}", "{eid}")
               .replace("{mail_id}", "{mid}").replace("{received_id}", "{reid}")) for m, p in paths}
    assert normal == listed


async def test_without_a_session_every_page_redirects_to_sign_in_and_shows_nothing(world):
    rt, ids = world
    async with client(rt) as http:
        for path in PAGES + ["/"]:
            r = await http.get(path.format(**ids))
            assert r.status_code == 303 and r.headers["location"] == "/signin", path
            assert "acme" not in r.text and "script" not in r.text and ids["sid"] not in r.text, path
        for path in FORMS:
            r = await http.post(path.format(**ids), data={"csrf": "x", "name": "n", "email": "a@b.co"})
            assert r.status_code == 303 and r.headers["location"] == "/signin", path
        # a forged or tampered cookie is no session either
        http.cookies.set(sess.COOKIE, "eyJ3IjoiZGVmYXVsdCJ9.forged")
        r = await http.get(f"/services/{ids['sid']}")
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert rt.control.state.services[ids["sid"]].name == EVIL  # nothing changed


async def test_a_session_is_bound_to_the_admin_token_and_expires(world):
    rt, ids = world
    async with client(rt) as http:
        await sign_in(http, ADMIN_TOKEN)
        assert (await http.get("/services")).status_code == 200
        cookie = http.cookies[sess.COOKIE]
        # the session is stateless: another process with the same master key accepts it
        other = create_app(rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://x") as h2:
            h2.cookies.set(sess.COOKIE, cookie)
            assert (await h2.get("/services")).status_code == 200
        ws = rt.control.state.workspaces["default"]
        assert sess.read(rt.settings.master_key, cookie, lambda w: ws.token_hash, now=time.time() + sess.LIFETIME + 1) is None
        await rt.create_workspace("Default workspace", "default")  # re-keyed: the old token's sessions end
        r = await http.get("/services")
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        form = await http.get("/signin")
        r = await http.post("/signin", data={"csrf": csrf_of(form.text), "token": ADMIN_TOKEN})
        assert r.status_code == 401 and "not valid" in r.text


async def test_workspace_b_sees_nothing_of_workspace_a(world):
    rt, ids = world
    _, token_b = await rt.create_workspace("B")
    async with client(rt) as http:
        csrf = await sign_in(http, token_b)
        listing = await http.get("/services")
        assert "acme" not in listing.text and ids["sid"] not in listing.text and "No services yet" in listing.text
        for path in PAGES[1:]:
            if path == "/inbox":
                r = await http.get(path)
                assert r.status_code == 200 and "secret subject of A" not in r.text and ids["mid"] not in r.text
                continue
            r = await http.get(path.format(**ids))
            assert r.status_code == 404, path
            assert "acme" not in r.text and "alert" not in r.text and "gone@example.com" not in r.text, path
        for path in FORMS[2:]:
            r = await http.post(path.format(**ids), data={"csrf": csrf, "name": "n", "email": "a@b.co",
                                                          "mode": "production", "domain": "b.test"})
            assert r.status_code == 404, path
    state = rt.control.state
    assert ids["kid"] in state.api_keys and ids["wid"] in state.webhooks and ids["did"] in state.domains
    assert state.suppression(ids["sid"], "gone@example.com") is not None


async def test_forms_without_their_csrf_token_are_refused(world):
    rt, ids = world
    async with client(rt) as http:
        csrf = await sign_in(http, ADMIN_TOKEN)
        async with client(rt) as other:
            other_csrf = await sign_in(other, ADMIN_TOKEN)  # another session's token does not fit
        assert other_csrf != csrf
        for path in FORMS:
            for data in ({}, {"csrf": ""}, {"csrf": other_csrf}):
                r = await http.post(path.format(**ids), data={**data, "name": "n", "email": "a@b.co"})
                assert r.status_code == 403, (path, data)
                assert "did not come from this dashboard" in r.text
        # a sign-in form without its own double-submitted token is refused too
        r = await http.post("/signin", data={"token": ADMIN_TOKEN})
        assert r.status_code == 403
    state = rt.control.state
    assert len(state.services_of("default")) == 1 and ids["kid"] in state.api_keys


async def test_html_in_names_subjects_and_recipients_is_escaped_everywhere(world):
    rt, ids = world
    async with client(rt) as http:
        await sign_in(http, ADMIN_TOKEN)
        for path in PAGES:
            r = await http.get(path.format(**ids))
            assert r.status_code == 200, path
            assert "<script>alert" not in r.text and "<img src=x" not in r.text, path
        detail = (await http.get(f"/services/{ids['sid']}")).text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in detail
        log = (await http.get(f"/services/{ids['sid']}/messages")).text
        assert log.count("&lt;script&gt;alert") >= 2  # the subject and the recipient's name
        message = (await http.get(f"/services/{ids['sid']}/messages/{ids['eid']}")).text
        assert "&lt;img src=x onerror=alert(1)&gt;" in message  # the SMTP reply field too
        assert r.headers["content-security-policy"].startswith("default-src 'none'")
