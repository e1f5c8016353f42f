"""Dashboard security: no session → sign-in and no data; one workspace never sees another's
(404); forms without their CSRF token → 403; HTML in names, subjects and recipients is
escaped. In-process app (real embedded log, chDB, dev inbox file), no browser needed."""
from __future__ import annotations

import contextlib
import importlib
import pkgutil
import time
from datetime import timedelta

import httpx
import pytest

from services.analytics.rows import event_row, message_row
from services.api.access import Actor
from services.api.app import create_app
from services.api.manage import sessions, user_tokens
from services.api.dashboard import session as sess
from shared import events as ev
from shared.store import received
from tests.services.api.dashboard.support import csrf_of, sign_in
from tests.support.inproc import add_user, api_runtime
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
    # a user of A with a session and a personal token
    amy = await add_user(rt, "default", "amy@acme.test", "developer")
    ids["uid"] = amy.user_id
    await sessions.open_session(rt, rt.control.state.workspaces["default"], amy, "password", None, None)
    ids["ses"] = rt.control.state.sessions_of("default", amy.user_id)[0].session_id
    ids["tid"] = (await user_tokens.create_token(rt, Actor("default", "developer", user=amy), "ci"))["id"]
    r = await admin("POST", f"/api/email/services/{sid}/receiving-rules", json={"pattern": "help@acme.test"})
    ids["rule"] = r.json()["id"]
    # a published template with HTML in its name and body
    r = await admin("POST", f"/api/email/services/{sid}/templates", json={"name": EVIL, "html": f"<p>{EVIL}</p>"})
    ids["tpl"] = r.json()["id"]
    await admin("POST", f"/api/email/services/{sid}/templates/{ids['tpl']}/publish")
    ids["ver"] = rt.control.state.versions_of_template(ids["tpl"])[0].version_id
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
         "/inbox", "/inbox/{mid}", "/people", "/account", "/audit-log",
         "/services/{sid}/received", "/services/{sid}/received/{reid}", "/services/{sid}/templates",
         "/services/{sid}/templates/{tpl}", "/services/{sid}/deliverability",
         "/services/{sid}/deliverability?period=30d", "/shaping"]
FORMS = ["/signout", "/services", "/services/{sid}/settings", "/services/{sid}/domains",
         "/services/{sid}/domains/{did}/verify", "/services/{sid}/domains/{did}/delete", "/services/{sid}/keys",
         "/services/{sid}/keys/{kid}/revoke", "/services/{sid}/sandbox", "/services/{sid}/sandbox/{rid}/delete",
         "/services/{sid}/webhooks", "/services/{sid}/webhooks/{wid}/test", "/services/{sid}/webhooks/{wid}/replay",
         "/services/{sid}/webhooks/{wid}/delete", "/services/{sid}/suppressions",
         "/services/{sid}/suppressions/remove", "/people/{uid}/role", "/people/{uid}/remove",
         "/account/sessions/{ses}/end", "/account/tokens/{tid}/revoke",
         "/services/{sid}/domains/{did}/receiving", "/services/{sid}/templates", "/services/{sid}/templates/{tpl}",
         "/services/{sid}/templates/{tpl}/publish", "/services/{sid}/templates/{tpl}/send-test",
         "/services/{sid}/templates/{tpl}/versions/{ver}/restore", "/services/{sid}/templates/{tpl}/delete",
         "/services/{sid}/received/rules", "/services/{sid}/received/rules/{rule}/delete"]
# forms without a target id (the caller's own workspace or account): not in the other-workspace test
OWN_FORMS = ["/people", "/account/signout-everywhere", "/account/totp", "/account/totp/confirm",
             "/account/totp/disable", "/account/tokens"]
PUBLIC = {("GET", "/"), ("GET", "/signin"), ("POST", "/signin"), ("POST", "/signin/password"),
          ("GET", "/accept-invite"), ("POST", "/accept-invite"), ("GET", "/signin/oidc"),
          ("GET", "/signin/oidc/callback"), ("GET", "/signin/oidc/done")}


@pytest.fixture
async def world(tmp_path):
    async with api_runtime(tmp_path, with_store=True, webhook_allow_private=True) as (rt, admin):
        yield rt, await seed(rt, admin)


def test_every_dashboard_route_is_listed():
    """New pages must join PAGES/FORMS above, so the checks below cover them."""
    from services.api.dashboard import pages

    modules = [importlib.import_module(f"{pages.__name__}.{info.name}") for info in pkgutil.iter_modules(pages.__path__)]
    paths = {(m, r.path) for mod in modules if hasattr(mod, "router") for r in mod.router.routes for m in r.methods}
    listed = {("GET", p.split("?")[0]) for p in PAGES} | {("POST", p) for p in FORMS + OWN_FORMS} | PUBLIC
    normal = {(m, p.replace("{service_id}", "{sid}").replace("{domain_id}", "{did}").replace("{key_id}", "{kid}")
               .replace("{recipient_id}", "{rid}").replace("{webhook_id}", "{wid}").replace("{email_id}", "{eid}")
               .replace("{mail_id}", "{mid}").replace("{user_id}", "{uid}").replace("{session_id}", "{ses}")
               .replace("{token_id}", "{tid}").replace("{received_id}", "{reid}")
               .replace("{template_id}", "{tpl}").replace("{version_id}", "{ver}")
               .replace("{rule_id}", "{rule}")) for m, p in paths}
    assert normal == listed


async def test_without_a_session_every_page_redirects_to_sign_in_and_shows_nothing(world):
    rt, ids = world
    async with client(rt) as http:
        for path in PAGES + ["/"]:
            r = await http.get(path.format(**ids))
            assert r.status_code == 303 and r.headers["location"] == "/signin", path
            assert "acme" not in r.text and "script" not in r.text and ids["sid"] not in r.text, path
        for path in FORMS + OWN_FORMS:
            r = await http.post(path.format(**ids), data={"csrf": "x", "name": "n", "email": "a@b.co"})
            assert r.status_code == 303 and r.headers["location"] == "/signin", path
        # a forged or tampered cookie is no session either
        http.cookies.set(sess.COOKIE, "eyJ3IjoiZGVmYXVsdCJ9.forged")
        r = await http.get(f"/services/{ids['sid']}")
        assert r.status_code == 303 and r.headers["location"] == "/signin"
    assert rt.control.state.services[ids["sid"]].name == EVIL  # nothing changed


async def test_a_session_is_stored_ends_on_sign_out_expires_and_is_bound_to_the_admin_token(world):
    rt, ids = world
    async with client(rt) as http:
        csrf = await sign_in(http, ADMIN_TOKEN)
        cookie = http.cookies[sess.COOKIE]
        session_id = cookie.partition(".")[0]
        rec = rt.control.state.sessions[session_id]
        assert rec.user_id is None and rec.method == "admin_token"
        assert cookie.partition(".")[2] not in rec.model_dump_json()  # only the secret's hash is stored
        # a forged secret for a real session id is no session
        async with client(rt) as forged:
            forged.cookies.set(sess.COOKIE, f"{session_id}.not-the-secret")
            assert (await forged.get("/services")).status_code == 303
        # idle for longer than IDLE, or past its absolute end however active: ended (on every process)
        await rt.control.save(rec.model_copy(update={"id": ev.new_id(), "last_seen_at": rec.last_seen_at - sessions.IDLE}))
        assert (await http.get("/services")).status_code == 303
        await sign_in(http, ADMIN_TOKEN)
        rec = rt.control.state.sessions[http.cookies[sess.COOKIE].partition(".")[0]]
        await rt.control.save(rec.model_copy(update={"id": ev.new_id(), "expires_at": ev.utcnow() - timedelta(seconds=1)}))
        assert (await http.get("/services")).status_code == 303
        csrf = await sign_in(http, ADMIN_TOKEN)
        old = http.cookies[sess.COOKIE]
        # signed out: the saved cookie is useless, here and on another app over the same log
        assert (await http.post("/signout", data={"csrf": csrf})).status_code == 303
        other = create_app(rt)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://x") as h2:
            h2.cookies.set(sess.COOKIE, old)
            r = await h2.get("/services")
            assert r.status_code == 303 and r.headers["location"] == "/signin"
        await sign_in(http, ADMIN_TOKEN)
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
            if path == "/shaping":  # the installation's: the operator's default workspace only
                r = await http.get(path)
                assert r.status_code == 403 and "default workspace" in r.text and "gone@example.com" not in r.text
                continue
            if path in ("/people", "/account", "/audit-log"):  # B's own people, sessions, changes: none of A's
                r = await http.get(path)
                assert r.status_code == 200 and "amy@acme.test" not in r.text and ids["ses"] not in r.text, path
                assert ids["sid"] not in r.text and ids["kid"] not in r.text, path
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
        for path in FORMS + OWN_FORMS:
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
