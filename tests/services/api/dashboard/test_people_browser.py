"""People and access in a real browser (Debian's chromium via Playwright) against a real
``postline all``, a second API process (``postline api``) over the same data dir, and a real
OpenID Connect provider (npm ``oidc-provider``): invite → accept → password + TOTP sign-in;
single sign-on; a viewer offered no form and refused every one posted directly; sign-out
ending a saved cookie on both processes. Invitations travel the real pipeline (relay → dev
inbox)."""
from __future__ import annotations

import contextlib
import re
import time
from types import SimpleNamespace

import httpx
import pyotp
import pytest
from playwright.sync_api import expect

from services.api.dashboard import session as sess
from tests.support.broker import free_port
from tests.support.browser import screenshot_dir
from tests.support.oidc_provider import OidcProvider
from tests.support.postline import ADMIN_TOKEN, PostlineProcess

pytestmark = pytest.mark.browser
PASSWORD = "a long enough passphrase"
CSRF_RE = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("people")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    provider = OidcProvider(f"{url}/signin/oidc/callback", base / "oidc.log").start()
    env = {**provider.env("sso.test"), "POSTLINE_PUBLIC_URL": url}
    first = PostlineProcess(base / "data", env=env, port=port).start(wait=False)
    # another API process over the same log; chDB has one owning process (the first), and
    # what is checked on this one (sessions, forms) does not query analytics
    second = PostlineProcess(base / "data", role="api", env={**env, "POSTLINE_CLICKHOUSE_URL": "http://127.0.0.1:9"})
    first.wait_ready()  # the first makes the default workspace and the log; then the second starts
    second.start()
    yield SimpleNamespace(a=first, b=second, provider=provider)
    second.stop()
    first.stop()
    provider.stop()


@pytest.fixture
def context(browser, world):
    ctx = browser.new_context(base_url=world.a.url)
    yield ctx
    ctx.close()


def admin_api(world) -> httpx.Client:
    return httpx.Client(base_url=world.a.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30)


def invitation_link(world, email: str) -> str:
    """The link in the invitation mail the relay delivered to the dev inbox."""
    with admin_api(world) as api:
        mails = api.get("/dev/inbox", params={"to": email, "wait": 20}).json()["data"]
        assert mails, f"no invitation for {email}"
        return api.get(f"/dev/inbox/{mails[0]['id']}").json()["links"][0]


@contextlib.contextmanager
def signed_in_http(world, token: str = ADMIN_TOKEN):
    """An HTTP client with a dashboard session of the admin token."""
    with httpx.Client(base_url=world.a.url, timeout=30) as http:
        form = http.get("/signin")
        r = http.post("/signin", data={"csrf": CSRF_RE.search(form.text).group(1), "token": token})
        assert r.status_code == 303, r.text
        yield http


def invited_user_cookie(world, email: str, role: str) -> str:
    """Invite ``email`` as ``role`` through the dashboard, accept the mailed link; the
    invitee's session cookie."""
    with signed_in_http(world) as admin:
        csrf = CSRF_RE.search(admin.get("/people").text).group(1)
        assert admin.post("/people", data={"csrf": csrf, "email": email, "role": role}).status_code == 201
    link = invitation_link(world, email)
    with httpx.Client(timeout=30) as invitee:
        r = invitee.post(link.split("?")[0], data={"token": link.split("token=")[1], "password": PASSWORD,
                                                   "password_again": PASSWORD})
        assert r.status_code == 303, r.text
        return invitee.cookies[sess.COOKIE]


def admin_page(context):
    """A page of ``context`` signed in with the workspace admin token."""
    page = context.new_page()
    page.goto("/signin")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url("**/services")
    return page


def test_invite_accept_then_sign_in_with_password_and_totp(world, context):
    admin = admin_page(context)
    admin.goto("/people")
    admin.get_by_label("Email", exact=True).fill("pat@acme.test")
    admin.get_by_label("Role", exact=True).select_option("developer")
    admin.get_by_role("button", name="Send invitation").click()
    expect(admin.get_by_text("Invitation sent to pat@acme.test (developer)")).to_be_visible()
    link = invitation_link(world, "pat@acme.test")

    with context.browser.new_context() as own:  # the invitee's own browser
        pat = own.new_page()
        pat.goto(link)
        pat.get_by_label("Password", exact=True).fill(PASSWORD)
        pat.get_by_label("Password again").fill(PASSWORD)
        pat.get_by_role("button", name="Accept invitation").click()
        pat.wait_for_url("**/account")
        pat.get_by_role("button", name="Set up authenticator app").click()
        secret = pat.locator("#totp-secret").inner_text()
        pat.get_by_label("Code").fill(pyotp.TOTP(secret).now())
        pat.get_by_role("button", name="Turn on").click()
        expect(pat.locator("#recovery-codes li")).to_have_count(10)
        pat.screenshot(path=str(screenshot_dir() / "account.png"), full_page=True)
        pat.get_by_role("button", name="Sign out", exact=True).click()
        pat.wait_for_url("**/signin")
        pat.get_by_label("Email").fill("pat@acme.test")
        pat.get_by_label("Password").fill(PASSWORD)
        pat.get_by_role("button", name="Password sign-in").click()
        expect(pat.get_by_text("That address, password or code is not valid.")).to_be_visible()  # no code: refused
        pat.get_by_label("Email").fill("pat@acme.test")
        pat.get_by_label("Password").fill(PASSWORD)
        pat.get_by_label("Authentication code").fill(pyotp.TOTP(secret).at(time.time() + 30))  # the next code
        pat.get_by_role("button", name="Password sign-in").click()
        pat.wait_for_url("**/services")
        assert pat.get_by_text("pat@acme.test (developer)").is_visible()
    admin.goto("/people")
    row = admin.get_by_role("row", name=re.compile("pat@acme.test"))
    assert "active" in row.inner_text() and "TOTP" in row.inner_text()
    admin.screenshot(path=str(screenshot_dir() / "people.png"), full_page=True)


def test_a_viewer_is_offered_no_form_and_every_form_posted_directly_is_refused(world, context):
    with admin_api(world) as api:
        sid = api.post("/api/email/services", json={"name": "shop"}).json()["id"]
        kid = api.post(f"/api/email/services/{sid}/api-keys", json={"name": "k"}).json()["id"]
    cookie = invited_user_cookie(world, "vera@acme.test", "viewer")
    context.add_cookies([{"name": sess.COOKIE, "value": cookie, "url": world.a.url}])
    page = context.new_page()
    page.goto(f"/services/{sid}/keys")
    assert page.get_by_text("Read-only access").is_visible()
    assert page.get_by_text("vera@acme.test (viewer)").is_visible()
    assert not page.get_by_role("button", name="Create key").is_visible()
    assert not page.get_by_role("button", name="Revoke").is_visible()
    page.goto("/services")
    assert not page.get_by_role("button", name="Create service").is_visible()
    csrf = CSRF_RE.search(page.content()).group(1)
    with httpx.Client(base_url=world.b.url, cookies={sess.COOKIE: cookie}, timeout=30) as vera:
        for path, data in [("/services", {"name": "mine"}), (f"/services/{sid}/keys", {"name": "k2"}),
                           (f"/services/{sid}/keys/{kid}/revoke", {}), (f"/services/{sid}/settings", {"mode": "production"}),
                           (f"/services/{sid}/suppressions", {"email": "x@y.co"}), ("/people", {"email": "a@b.co"})]:
            r = vera.post(path, data={"csrf": csrf, **data})
            assert r.status_code == 403 and "may not" in r.text, path
    with admin_api(world) as api:
        assert [s["name"] for s in api.get("/api/email/services").json()["data"]] == ["shop"]
        assert [k["id"] for k in api.get(f"/api/email/services/{sid}/api-keys").json()["data"]] == [kid]
        assert api.get(f"/api/email/services/{sid}/suppressions").json()["data"] == []


def test_sign_out_makes_a_saved_cookie_useless_on_every_api_process(world, context):
    page = admin_page(context)
    saved = next(c["value"] for c in context.cookies() if c["name"] == sess.COOKIE)
    for proc in (world.a, world.b):
        assert httpx.get(f"{proc.url}/services", cookies={sess.COOKIE: saved}).status_code == 200
    page.goto("/account")
    assert page.get_by_text("(this one)").is_visible()
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url("**/signin")
    for proc in (world.a, world.b):
        r = httpx.get(f"{proc.url}/services", cookies={sess.COOKIE: saved})
        assert r.status_code == 303 and r.headers["location"] == "/signin", proc.url


def sso_sign_in(page, login: str) -> None:
    """From Postline's sign-in page through the provider's own login and consent forms."""
    page.goto("/signin")
    page.get_by_role("link", name="Single sign-on (OpenID Connect)").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("anything")
    page.get_by_role("button", name="Sign-in").click()
    page.get_by_role("button", name="Continue").click()


def test_single_sign_on_with_the_local_openid_provider(world, context):
    page = context.new_page()
    sso_sign_in(page, "olga@sso.test")
    page.wait_for_url("**/services")
    assert page.get_by_text("olga@sso.test (viewer)").is_visible()  # a first SSO sign-in: the lowest role
    assert page.get_by_text("Read-only access").is_visible()
    # an address neither invited nor of an allowed domain is turned away
    with context.browser.new_context(base_url=world.a.url) as other:
        stranger = other.new_page()
        sso_sign_in(stranger, "mallory@evil.test")
        stranger.wait_for_url("**/signin/oidc/callback**")
        assert stranger.get_by_text("mallory@evil.test is not invited").is_visible()
    # an invited address (any domain) signs in with the role it was invited with
    with signed_in_http(world) as admin:
        csrf = CSRF_RE.search(admin.get("/people").text).group(1)
        assert admin.post("/people", data={"csrf": csrf, "email": "ivan@partner.test", "role": "admin"}).status_code == 201
    with context.browser.new_context(base_url=world.a.url) as other:
        ivan = other.new_page()
        sso_sign_in(ivan, "ivan@partner.test")
        ivan.wait_for_url("**/services")
        assert ivan.get_by_text("ivan@partner.test (admin)").is_visible()
    # an answer that does not belong to a sign-in started here is refused (state, flow cookie)
    r = httpx.get(f"{world.a.url}/signin/oidc/callback", params={"code": "x", "state": "forged"})
    assert r.status_code == 400 and "does not match a sign-in started here" in r.text
    with signed_in_http(world) as admin:
        people = admin.get("/people").text
        assert "olga@sso.test" in people and "mallory@evil.test" not in people
        assert re.search(r"ivan@partner.test.*?active.*?SSO", people, re.S)


def test_a_viewer_cannot_read_an_invitation_in_the_dev_inbox(world, context):
    """The reviewer's escalation, on a real ``postline all``: an admin's invitation travels the
    pipeline into the dev inbox; a viewer who could read it would post its link and become that
    admin. The viewer's Dev inbox page lists it not, its page is a 404 on both API processes;
    an admin reads it."""
    cookie = invited_user_cookie(world, "vio@acme.test", "viewer")
    with signed_in_http(world) as admin:
        csrf = CSRF_RE.search(admin.get("/people").text).group(1)
        assert admin.post("/people", data={"csrf": csrf, "email": "root@acme.test", "role": "admin"}).status_code == 201
    link = invitation_link(world, "root@acme.test")  # delivered: the relay captured it
    token = link.split("token=")[1]
    with admin_api(world) as api:
        mail_id = api.get("/dev/inbox", params={"to": "root@acme.test"}).json()["data"][0]["id"]

    context.add_cookies([{"name": sess.COOKIE, "value": cookie, "url": world.a.url}])
    page = context.new_page()
    page.goto("/inbox")
    expect(page.get_by_role("heading", name="Dev inbox")).to_be_visible()
    assert "root@acme.test" not in page.content() and "You are invited" not in page.content()
    response = page.goto(f"/inbox/{mail_id}")
    assert response is not None and response.status == 404
    expect(page.get_by_text("This message is not in your dev inbox.")).to_be_visible()
    assert token not in page.content()
    for proc in (world.a, world.b):  # the second process knows the message from the log only
        r = httpx.get(f"{proc.url}/inbox/{mail_id}", cookies={sess.COOKIE: cookie}, timeout=30)
        assert r.status_code == 404 and token not in r.text, proc.url
        r = httpx.get(f"{proc.url}/inbox", cookies={sess.COOKIE: cookie}, timeout=30)
        assert r.status_code == 200 and mail_id not in r.text, proc.url

    with context.browser.new_context(base_url=world.a.url) as own:  # who may invite reads it
        admin_view = admin_page(own)
        admin_view.goto("/inbox")
        expect(admin_view.get_by_role("link", name=re.compile("You are invited")).first).to_be_visible()
        assert admin_view.goto(f"/inbox/{mail_id}").status == 200 and token in admin_view.content()
