"""People and access (docs/people-and-access.md), in-process over the real embedded log: invitations mailed
through the send pipeline, password + TOTP sign-in with its edge cases, roles refused
server-side on the management API (personal tokens) and on dashboard forms posted directly,
sessions listed and ended. The browser test (tests/services/api/dashboard/test_people_browser.py)
drives the same flows as a person does."""
from __future__ import annotations

import re
import time

import httpx
import pyotp
import pytest
from argon2 import PasswordHasher

from services.api.app import create_app
from services.api.dashboard import session as sess
from services.api.manage import credentials, users
from services.api.manage.credentials import recovery_hash
from shared import events as ev
from shared.crypto import unseal
from tests.services.api.dashboard.support import csrf_of, sign_in
from tests.services.api.dashboard.test_security import FORMS, OWN_FORMS, seed
from tests.support.inproc import add_user, api_runtime
from tests.support.postline import ADMIN_TOKEN

PASSWORD = "correct horse battery staple"


def client(app) -> httpx.AsyncClient:
    """A browser-like client (its own cookie jar) of the test's one app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://127.0.0.1:8080")


async def password_sign_in(http: httpx.AsyncClient, email: str, password: str = PASSWORD, code: str = "") -> httpx.Response:
    http.cookies.delete(sess.COOKIE)  # a fresh sign-in, not a redirect of the one this client has
    form = await http.get("/signin")
    return await http.post("/signin/password", data={"csrf": csrf_of(form.text), "email": email,
                                                     "password": password, "code": code})


async def requests_on_the_log(rt) -> list[ev.SendRequested]:
    consumer = rt.log.consumer([ev.Topic.REQUESTS], group=None)
    await consumer.start()
    try:
        out: list[ev.SendRequested] = []
        while batch := await consumer.poll(max_records=1000, timeout=0.2):
            out += [ev.decode(r.value) for r in batch]
        return out
    finally:
        await consumer.close()


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    """argon2id with small costs: the product's (RFC 9106 low-memory: 64 MiB, 3 passes) take
    ~0.3 s per hash on a busy test machine, and what is tested here is not the cost."""
    monkeypatch.setattr(credentials, "HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
async def world(tmp_path):
    async with api_runtime(tmp_path, with_store=True, webhook_allow_private=True) as (rt, admin):
        yield rt, admin, create_app(rt)  # one app per test: building one takes a noticeable moment


async def test_invitation_is_mailed_through_the_pipeline_and_accepting_it_signs_in(world):
    rt, admin, app = world
    async with client(app) as http:
        csrf = await sign_in(http, ADMIN_TOKEN)
        r = await http.post("/people", data={"csrf": csrf, "email": "not an address", "role": "viewer"})
        assert r.status_code == 400 and "email" in r.text
        r = await http.post("/people", data={"csrf": csrf, "email": "dev@acme.test", "role": "boss"})
        assert r.status_code == 400 and "role" in r.text
        r = await http.post("/people", data={"csrf": csrf, "email": "Dev@Acme.test", "role": "developer"})
        assert r.status_code == 201 and "Invitation sent to dev@acme.test" in r.text
        r = await http.post("/people", data={"csrf": csrf, "email": "dev@acme.test", "role": "developer"})
        assert r.status_code == 429 and "less than a minute ago" in r.text  # no mail bombing through invitations
    mail = [m for m in await requests_on_the_log(rt) if m.to == ["dev@acme.test"]]
    assert len(mail) == 1 and mail[0].service_id == users.SYSTEM_SERVICE and "postline-invitation" in mail[0].tags
    assert mail[0].from_ == f"Postline <{rt.settings.sandbox_from}>"
    token = re.search(r"/accept-invite\?token=([\w-]+)", mail[0].text).group(1)
    user = next(iter(rt.control.state.users.values()))
    assert user.status == "invited" and token not in user.model_dump_json()  # only its hash is kept
    async with client(app) as http:
        page = await http.get(f"/accept-invite?token={token}")
        assert page.status_code == 200 and "developer" in page.text
        r = await http.post("/accept-invite", data={"token": token, "password": "short", "password_again": "short"})
        assert r.status_code == 400 and "password: at least 12 characters" in r.text
        r = await http.post("/accept-invite", data={"token": token, "password": PASSWORD, "password_again": PASSWORD})
        assert r.status_code == 303 and r.headers["location"] == "/account"
        assert "dev@acme.test (developer)" in (await http.get("/account")).text
        # the link is used up
        r = await http.post("/accept-invite", data={"token": token, "password": PASSWORD, "password_again": PASSWORD})
        assert r.status_code == 400 and "invalid, used or expired" in r.text
    user = rt.control.state.users[user.user_id]
    assert user.status == "active" and user.password_hash.startswith("$argon2id$") and user.invite_token_hash is None
    async with client(app) as http:
        assert (await password_sign_in(http, "dev@acme.test", "wrong password!")).status_code == 401
        assert (await password_sign_in(http, "nobody@acme.test")).status_code == 401
        r = await password_sign_in(http, "DEV@acme.test")
        assert r.status_code == 303 and r.headers["location"] == "/services"
        # an invitation to an active member is refused
        csrf = csrf_of((await http.get("/people")).text)
    async with client(app) as http:
        csrf = await sign_in(http, ADMIN_TOKEN)
        r = await http.post("/people", data={"csrf": csrf, "email": "dev@acme.test", "role": "viewer"})
        assert r.status_code == 409 and "already a member" in r.text


async def test_totp_codes_work_once_and_recovery_codes_replace_them_once(world):
    rt, admin, app = world
    user = await add_user(rt, "default", "tia@acme.test", "developer", PASSWORD)
    async with client(app) as http:
        assert (await password_sign_in(http, "tia@acme.test")).status_code == 303
        csrf = csrf_of((await http.get("/account")).text)
        assert (await http.post("/account/totp", data={"csrf": csrf})).status_code == 303
        pending = rt.control.state.users[user.user_id].totp_pending_sealed
        secret = unseal(rt.settings.master_key, pending, f"totp:{user.user_id}").decode()
        assert secret in (await http.get("/account")).text  # shown to be typed into the app
        r = await http.post("/account/totp/confirm", data={"csrf": csrf, "code": "000000"})
        assert r.status_code == 400 and "not valid" in r.text
        r = await http.post("/account/totp/confirm", data={"csrf": csrf, "code": pyotp.TOTP(secret).now()})
        assert r.status_code == 201
        codes = re.findall(r"<li>([a-z0-9]{4}-[a-z0-9]{4}-[a-z0-9]{4})</li>", r.text)
        assert len(codes) == 10 and all(recovery_hash(c) in rt.control.state.users[user.user_id].recovery_hashes
                                        for c in codes)
        assert codes[0] not in (await http.get("/account")).text  # shown once
    async with client(app) as http:
        assert (await password_sign_in(http, "tia@acme.test")).status_code == 401  # a code is needed now
        # the code used to turn it on cannot be used again; the next step's can
        assert (await password_sign_in(http, "tia@acme.test", code=pyotp.TOTP(secret).now())).status_code == 401
        later = pyotp.TOTP(secret).at(time.time() + 30)
        assert (await password_sign_in(http, "tia@acme.test", code=later)).status_code == 303
        assert (await password_sign_in(http, "tia@acme.test", code=later)).status_code == 401  # replayed
        assert (await password_sign_in(http, "tia@acme.test", code=codes[3])).status_code == 303
        assert (await password_sign_in(http, "tia@acme.test", code=codes[3])).status_code == 401  # used up
        assert (await password_sign_in(http, "tia@acme.test", "a wrong password", codes[4])).status_code == 401


async def test_a_viewer_cannot_change_anything_even_posting_forms_directly(world):
    rt, admin, app = world
    ids = await seed(rt, admin)
    await add_user(rt, "default", "vic@acme.test", "viewer", PASSWORD)
    tables = ("services", "api_keys", "domains", "webhooks", "sandbox", "suppressions", "users", "sessions")
    snapshot = {k: dict(getattr(rt.control.state, k)) for k in tables}
    async with client(app) as http:
        assert (await password_sign_in(http, "vic@acme.test")).status_code == 303
        page = await http.get(f"/services/{ids['sid']}/keys")
        assert page.status_code == 200 and "Read-only access" in page.text
        csrf = csrf_of(page.text)
        for path in [f for f in FORMS[1:] if not f.startswith("/account/")] + ["/people"]:  # but their own account
            r = await http.post(path.format(**ids), data={"csrf": csrf, "name": "n", "email": "a@b.co",
                                                          "mode": "production", "role": "owner", "url": "http://x.test"})
            assert r.status_code == 403, path
            assert "may not" in r.text and "viewer" in r.text, path
        # a viewer's own account stays theirs: a personal token (read-only like them)
        r = await http.post("/account/tokens", data={"csrf": csrf, "name": "laptop"})
        assert r.status_code == 201
        token = re.search(r'id="new-token" class="secret">([^<]+)<', r.text).group(1)
    for table, rows in snapshot.items():
        if table == "sessions":  # the viewer's own session was opened
            assert set(getattr(rt.control.state, table)) - set(rows) == {http.cookies[sess.COOKIE].partition(".")[0]}
            continue
        assert getattr(rt.control.state, table) == rows, table
    # the management API with the viewer's token: reads yes, changes no
    viewer = admin.as_token(token)
    assert (await viewer("GET", "/api/email/services")).status_code == 200
    assert (await viewer("GET", f"/api/email/services/{ids['sid']}/api-keys")).status_code == 200
    for method, path, body in [("POST", "/api/email/services", {"name": "x"}),
                               ("PATCH", f"/api/email/services/{ids['sid']}", {"status": "disabled"}),
                               ("POST", f"/api/email/services/{ids['sid']}/api-keys", {"name": "k"}),
                               ("DELETE", f"/api/email/services/{ids['sid']}/api-keys/{ids['kid']}", None),
                               ("POST", f"/api/email/services/{ids['sid']}/suppressions", {"email": "z@y.co"})]:
        r = await viewer(method, path, json=body)
        assert r.status_code == 403 and r.json()["name"] == "forbidden" and "viewer" in r.json()["error"], path
    assert len(rt.control.state.services_of("default")) == 1 and ids["kid"] in rt.control.state.api_keys


async def test_roles_decide_with_the_users_current_role_and_owners_stay_owned(world):
    rt, admin, app = world
    dev = await add_user(rt, "default", "dee@acme.test", "developer", PASSWORD)
    adm = await add_user(rt, "default", "ada@acme.test", "admin", PASSWORD)
    owner = await add_user(rt, "default", "own@acme.test", "owner", PASSWORD)
    async with client(app) as http:
        await password_sign_in(http, "dee@acme.test")
        csrf = csrf_of((await http.get("/services")).text)
        assert (await http.post("/services", data={"csrf": csrf, "name": "by dev"})).status_code == 303
        r = await http.post("/people", data={"csrf": csrf, "email": "x@acme.test", "role": "viewer"})
        assert r.status_code == 403 and "manage people" in r.text
        # an API token of the developer creates; once demoted to viewer, the same token cannot
        r = await http.post("/account/tokens", data={"csrf": csrf, "name": "ci"})
        token = re.search(r'id="new-token" class="secret">([^<]+)<', r.text).group(1)
    api = admin.as_token(token)
    assert (await api("POST", "/api/email/services", json={"name": "by token"})).status_code == 201
    # tenant isolation: the token is its workspace's only
    _, token_b = await rt.create_workspace("B")
    sid_b = (await admin.as_token(token_b)("POST", "/api/email/services", json={"name": "b"})).json()["id"]
    assert (await api("GET", f"/api/email/services/{sid_b}")).status_code == 404
    assert sid_b not in (await api("GET", "/api/email/services")).text
    async with client(app) as http:
        await password_sign_in(http, "ada@acme.test")
        csrf = csrf_of((await http.get("/people")).text)
        assert (await http.post(f"/people/{dev.user_id}/role", data={"csrf": csrf, "role": "viewer"})).status_code == 303
        r = await http.post(f"/people/{dev.user_id}/role", data={"csrf": csrf, "role": "owner"})
        assert r.status_code == 403 and "only an owner" in r.text
        r = await http.post(f"/people/{owner.user_id}/remove", data={"csrf": csrf})
        assert r.status_code == 403 and owner.user_id in rt.control.state.users
    assert (await api("POST", "/api/email/services", json={"name": "again"})).status_code == 403
    async with client(app) as http:
        await password_sign_in(http, "own@acme.test")
        csrf = csrf_of((await http.get("/people")).text)
        assert (await http.post(f"/people/{dev.user_id}/remove", data={"csrf": csrf})).status_code == 303
        assert (await http.post(f"/people/{adm.user_id}/role", data={"csrf": csrf, "role": "owner"})).status_code == 303
    # removed: the token and the sessions of the user stop working at once
    assert (await api("GET", "/api/email/services")).status_code == 401
    assert rt.control.state.sessions_of("default", dev.user_id) == []
    assert rt.control.state.users[adm.user_id].role == "owner"


async def test_sessions_are_listed_and_sign_out_everywhere_ends_them_all(world):
    rt, admin, app = world
    await add_user(rt, "default", "sam@acme.test", "viewer", PASSWORD)
    phones = []
    for _ in range(3):
        http = client(app)
        assert (await password_sign_in(http, "sam@acme.test")).status_code == 303
        phones.append(http)
    try:
        account = await phones[0].get("/account")
        assert account.text.count("/account/sessions/") == 3 and "(this one)" in account.text
        own = phones[1].cookies[sess.COOKIE].partition(".")[0]
        csrf = csrf_of(account.text)
        assert (await phones[0].post(f"/account/sessions/{own}/end", data={"csrf": csrf})).status_code == 303
        assert (await phones[1].get("/services")).status_code == 303  # that one is ended
        assert (await phones[2].get("/services")).status_code == 200
        # another user's (or the admin token's) session cannot be ended from here
        async with client(app) as other:
            await sign_in(other, ADMIN_TOKEN)
            admin_session = other.cookies[sess.COOKIE].partition(".")[0]
            r = await phones[0].post(f"/account/sessions/{admin_session}/end", data={"csrf": csrf})
            assert r.status_code == 404
            r = await phones[0].post("/account/signout-everywhere", data={"csrf": csrf})
            assert r.status_code == 303 and r.headers["location"] == "/signin"
            for http in phones:
                assert (await http.get("/services")).status_code == 303
            assert (await other.get("/services")).status_code == 200  # the admin token's session is not the user's
    finally:
        for http in phones:
            await http.aclose()


async def test_only_the_operator_assigns_a_services_ip_pool(world):
    """A tenant's owner cannot leave the IP pool the operator put its service in, nor take one."""
    rt, admin, _ = world
    pool = await admin("POST", "/api/email/ip-pools", json={
        "name": "p", "addresses": [{"ip": "127.0.0.9", "ehlo_name": "mta1.acme.test"}]})
    assert pool.status_code == 201, pool.text
    _, token_b = await rt.create_workspace("B")
    tenant = admin.as_token(token_b)
    sid_b = (await tenant("POST", "/api/email/services", json={"name": "b"})).json()["id"]
    for value in (pool.json()["id"], ""):
        r = await tenant("PATCH", f"/api/email/services/{sid_b}", json={"ip_pool_id": value})
        assert r.status_code == 403 and "operator" in r.json()["error"]
    assert (await tenant("PATCH", f"/api/email/services/{sid_b}", json={"name": "b2"})).status_code == 200
    sid = await admin.service()
    r = await admin("PATCH", f"/api/email/services/{sid}", json={"ip_pool_id": pool.json()["id"]})
    assert r.status_code == 200 and r.json()["ip_pool_id"] == pool.json()["id"]


async def personal_token(app, email: str) -> str:
    """A personal API token of the active user ``email``, made on their Account page."""
    async with client(app) as http:
        assert (await password_sign_in(http, email)).status_code == 303
        csrf = csrf_of((await http.get("/account")).text)
        r = await http.post("/account/tokens", data={"csrf": csrf, "name": "laptop"})
        return re.search(r'id="new-token" class="secret">([^<]+)<', r.text).group(1)


async def captured_by_the_dev_inbox(rt) -> dict[str, str]:
    """Every message on the log with recipients, built as the relay builds it and captured as
    its dev-inbox sender captures it (this test runs no relay): email id → dev inbox id."""
    from services.relay.mime import build

    return {req.email_id: await rt.inbox.store("bounces@postline.test", req.recipients, build(req, "postline.test"))
            for req in await requests_on_the_log(rt) if req.recipients}


async def test_mail_carrying_a_credential_is_in_the_dev_inbox_only_for_who_may_send_it(world):
    """An invitation's link makes its reader the invited member; a sandbox confirmation link
    lets test mail reach an address. Each is read in the dev inbox (API and pages) only with
    the permission that sends it: a viewer sees neither, a developer the confirmation only."""
    rt, admin, app = world
    sid = await admin.service()
    key = await admin.key(sid)
    ready = await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "ann@example.com"})
    pending = await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "eve@example.com"})
    rec = rt.control.state.sandbox[ready.json()["id"]]
    await rt.control.save(rec.model_copy(update={"verified": True, "token_hash": None, "id": ev.new_id()}))
    sent = await admin.http.post("/emails", headers={"Api-Key": key}, json={
        "from": "a@acme.test", "to": ["ann@example.com"], "subject": "Your receipt", "text": "t"})
    async with client(app) as http:
        csrf = await sign_in(http, ADMIN_TOKEN)
        invited = await http.post("/people", data={"csrf": csrf, "email": "boss@acme.test", "role": "admin"})
        assert invited.status_code == 201
    await add_user(rt, "default", "vic@acme.test", "viewer", PASSWORD)
    await add_user(rt, "default", "dee@acme.test", "developer", PASSWORD)
    captured = await captured_by_the_dev_inbox(rt)
    invitation_email_id = next(r.email_id for r in await requests_on_the_log(rt) if r.to == ["boss@acme.test"])
    invitation = captured[invitation_email_id]
    confirmation = captured[pending.json()["verification_email_id"]]
    confirmations = {confirmation, captured[ready.json()["verification_email_id"]]}
    receipt = captured[sent.json()["id"]]

    readers = {"viewer": ("vic@acme.test", {receipt}), "developer": ("dee@acme.test", {receipt, *confirmations})}
    for role, (email, readable) in readers.items():
        api = admin.as_token(await personal_token(app, email))
        listed = {m["id"] for m in (await api("GET", "/dev/inbox")).json()["data"]}
        assert listed == readable, role
        for mail_id in {invitation, *confirmations} - readable:
            assert (await api("GET", f"/dev/inbox/{mail_id}")).status_code == 404, role
            assert (await api("GET", f"/dev/inbox/{mail_id}.eml")).status_code == 404, role
        by_id = await api("GET", "/dev/inbox", params={"email_id": invitation_email_id})
        assert by_id.json()["data"] == [], role
        for mail_id in readable:
            assert (await api("GET", f"/dev/inbox/{mail_id}")).status_code == 200, role
        async with client(app) as http:
            assert (await password_sign_in(http, email)).status_code == 303
            page = await http.get("/inbox")
            assert page.status_code == 200 and "Your receipt" in page.text and "You are invited" not in page.text
            assert ("Confirm your address" in page.text) == (confirmation in readable), role
            for mail_id in {invitation, *confirmations} - readable:
                r = await http.get(f"/inbox/{mail_id}")
                assert r.status_code == 404 and "accept-invite" not in r.text and "token=" not in r.text, role
    # who may invite reads every kind (the workspace admin token acts as an owner)
    listed = {m["id"] for m in (await admin("GET", "/dev/inbox")).json()["data"]}
    assert {invitation, *confirmations, receipt} <= listed
    assert "/accept-invite?token=" in (await admin("GET", f"/dev/inbox/{invitation}")).json()["links"][0]
    async with client(app) as http:
        await sign_in(http, ADMIN_TOKEN)
        assert (await http.get(f"/inbox/{invitation}")).status_code == 200
