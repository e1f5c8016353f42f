"""The dashboard in a real browser (Debian's chromium via Playwright) against a real
``postline all`` process and the tests' real DNS server. Each test asserts what a person
sees; `make screenshots` runs it to write docs/screenshots/ (linked from the README)."""
from __future__ import annotations

import re
import time

import httpx
import pytest
from playwright.sync_api import expect

from shared.dkim_keys import split_txt
from tests.support.browser import screenshot_dir
from tests.support.dns_server import DnsServer
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess

pytestmark = pytest.mark.browser
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def dns():
    server = DnsServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postline(tmp_path_factory, dns):
    proc = PostlineProcess(tmp_path_factory.mktemp("dash") / "data", env={"POSTLINE_DNS_SERVER": dns.address}).start()
    yield proc
    proc.stop()


@pytest.fixture
def page(browser, postline):
    context = browser.new_context(viewport=DESKTOP, base_url=postline.url)
    p = context.new_page()
    p.dialogs = []  # an alert() from injected HTML would land here
    p.on("dialog", lambda d: (p.dialogs.append(d.message), d.dismiss()))
    yield p
    context.close()


def shot(page, name: str, full_page: bool = True) -> None:
    folder = screenshot_dir()
    page.screenshot(path=str(folder / f"{name}.png"), full_page=full_page)


def sign_in(page) -> None:
    page.goto("/")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/services")


def create_service(page, name: str) -> str:
    page.goto("/services")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create service").click()
    page.wait_for_url(re.compile(r".*/services/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def reload_until(page, check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never shown on {page.url}: {page.inner_text('main')[:2000]}")
        time.sleep(0.3)
        page.reload()


def test_sign_in_with_the_admin_token_and_sign_out(page):
    page.goto("/services/anything")
    assert page.url.endswith("/signin")
    assert page.get_by_role("heading", name="Sign in").is_visible()
    shot(page, "sign-in")
    page.get_by_label("Admin token").fill("pl_adm_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "That admin token is not valid."
    sign_in(page)
    assert page.get_by_role("heading", name="Services").is_visible()
    assert "No services yet" in page.inner_text("main") or page.locator("table").count()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    page.goto("/services")
    assert page.url.endswith("/signin")


def test_service_key_domain_production_send_and_message_log(page, postline, dns):
    sign_in(page)
    sid = create_service(page, "Acme billing")
    assert page.get_by_role("heading", name="Acme billing").is_visible()
    assert page.locator("#mode").inner_text() == "sandbox"
    assert page.locator("#usage-today").inner_text() == "0"

    # an API key: the secret is on the page once, then only its prefix
    page.get_by_role("link", name="API keys").first.click()
    page.get_by_label("Name").fill("server")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()
    assert key.startswith("rs_eml_") and "shown only this once" in page.inner_text("main")
    page.goto(f"/services/{sid}/keys")
    assert key not in page.content() and key[:11] in page.inner_text("main")

    # production is refused until a domain is verified
    page.goto(f"/services/{sid}")
    page.get_by_role("button", name="Switch to production").click()
    assert "needs at least one verified domain" in page.get_by_role("alert").inner_text()

    # a domain: the records to publish; publish them in the real DNS server; verify now
    page.goto(f"/services/{sid}/domains")
    page.get_by_label("Domain").fill("acme.test")
    page.get_by_role("button", name="Add domain").click()
    assert page.locator("#domain-status").inner_text() == "pending"
    rows = page.locator("table.records tbody tr")
    assert rows.count() == 6
    shown = [[c.inner_text().strip() for c in r.locator("td").all()] for r in rows.all()]
    assert [r[0].split()[0] for r in shown] == ["SPF", "DKIM", "DKIM", "DMARC", "MX", "RETURN_PATH"]
    page.get_by_role("button", name="Verify now").click()
    checks = page.locator("table.checks tbody tr")
    assert [c.locator("td").nth(2).inner_text() for c in checks.all()] == ["missing"] * 6
    for kind, rtype, name, value, _ in shown:
        if rtype == "TXT" and not kind.startswith("DMARC"):
            dns.txt(name.replace("Copy", "").strip(), split_txt(value))
    page.get_by_role("button", name="Verify now").click()
    assert page.locator("#domain-status").inner_text() == "verified"
    statuses = [(c.locator("td").nth(0).inner_text().split()[0], c.locator("td").nth(2).inner_text())
                for c in page.locator("table.checks tbody tr").all()]
    # DMARC is optional and not published; the bounce MX is not a TXT record, not published here
    assert statuses == [("SPF", "found"), ("DKIM", "found"), ("DKIM", "found"), ("DMARC", "missing"),
                        ("MX", "missing"), ("RETURN_PATH", "found")]
    assert "v=spf1 include:" in page.locator("table.checks").inner_text()  # what DNS returned
    shot(page, "domain")

    page.goto(f"/services/{sid}")
    page.get_by_role("button", name="Switch to production").click()
    page.wait_for_url(f"**/services/{sid}")
    assert page.locator("#mode").inner_text() == "production"

    # send through the API; the message and its timeline appear in the log
    api = httpx.Client(base_url=postline.url, timeout=30)
    body = {"from": "Acme <billing@acme.test>", "to": ["ann@example.com"], "subject": "Your invoice #42",
            "html": "<h1 style=\"color:#2f5bd3\">Invoice #42</h1><p>Total: <b>$12.00</b></p>"
                    "<script>alert('from mail')</script>",
            "text": "Invoice #42\nTotal: $12.00", "tags": ["invoice"]}
    r = api.post("/emails", json=body, headers={"Api-Key": key})
    assert r.status_code == 200, r.text
    email_id = r.json()["id"]
    for n in range(4):  # some traffic for the chart
        api.post("/emails", json={**body, "subject": f"Reminder {n}", "to": [f"u{n}@example.com"], "tags": []},
                 headers={"Api-Key": key})
    page.goto(f"/services/{sid}/messages")
    reload_until(page, lambda: "Your invoice #42" in page.inner_text("main"))
    page.get_by_label("Tag").fill("invoice")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.messages tbody tr")).to_have_count(1)  # waits for the filtered page
    page.get_by_role("link", name="Your invoice #42").click()
    assert page.url.endswith(f"/messages/{email_id}")
    reload_until(page, lambda: "delivered" in page.locator("ol.timeline").inner_text()
                 if page.locator("ol.timeline").count() else False)
    timeline = page.locator("ol.timeline li")
    assert [li.locator(".badge").inner_text() for li in timeline.all()][:2] == ["sent", "delivered"]
    assert "smtp_code" in timeline.nth(1).inner_text() and "250" in timeline.nth(1).inner_text()
    assert "delivered" in page.locator("table.recipients").inner_text()
    assert "ann@example.com" in page.locator("table.recipients").inner_text()
    shot(page, "message")

    page.goto(f"/services/{sid}/messages")
    reload_until(page, lambda: page.locator("table.messages tbody tr").count() == 5)
    shot(page, "message-log")
    page.goto(f"/services/{sid}?period=24h")
    reload_until(page, lambda: "sent 5" in page.locator("ul.legend").inner_text().replace("\n", " "))
    assert page.locator("svg.chart polyline").count() >= 2  # sent and delivered at least
    assert page.locator("#usage-today").inner_text() == "5"
    shot(page, "service")
    page.goto("/services")
    shot(page, "services")

    # the dev inbox: the captured mail, its HTML in a sandboxed frame with scripts off
    page.get_by_role("link", name="Dev inbox").click()
    page.get_by_role("link", name="Your invoice #42").click()
    frame_el = page.locator("iframe.mail-html")
    assert frame_el.get_attribute("sandbox") == ""
    frame = page.frame_locator("iframe.mail-html")
    assert frame.locator("h1").inner_text() == "Invoice #42"
    assert "Total: $12.00" in page.locator("pre.mail-text").inner_text()
    shot(page, "dev-inbox-message", full_page=False)  # chromium leaves frames blank in full-page shots
    page.get_by_text("Headers").click()
    assert email_id in page.locator("table.headers").inner_text()
    page.get_by_text("Raw source").click()
    assert "DKIM-Signature" in page.locator("pre.raw").inner_text()
    time.sleep(0.3)
    assert page.dialogs == []  # the mail's <script> never ran

    page.set_viewport_size(PHONE)
    page.goto(f"/services/{sid}")
    assert page.get_by_role("heading", name="Acme billing").is_visible()
    shot(page, "service-phone")


def test_suppressions_add_search_remove(page):
    sign_in(page)
    sid = create_service(page, "Newsletter")
    page.get_by_role("link", name="Suppressions").first.click()
    assert "No suppressed addresses." in page.inner_text("main")
    for addr in ("gone@example.com", "bounced@example.org"):
        page.get_by_label("Email").fill(addr)
        page.get_by_role("button", name="Suppress").click()
        page.wait_for_url(f"**/services/{sid}/suppressions")
    table = page.locator("table").inner_text()
    assert "gone@example.com" in table and "bounced@example.org" in table and "manual" in table
    page.get_by_label("Email").fill("not an address")
    page.get_by_label("Email").evaluate("e => e.type = 'text'")  # past the browser's own check
    page.get_by_role("button", name="Suppress").click()
    assert page.get_by_role("alert").inner_text().startswith("email:")
    page.get_by_label("Search").fill("example.org")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table tbody tr")).to_have_count(1)
    page.goto(f"/services/{sid}/suppressions")
    shot(page, "suppressions")
    page.get_by_role("button", name="Remove gone@example.com").click()
    page.wait_for_url(f"**/services/{sid}/suppressions")
    text = page.inner_text("main")
    assert "gone@example.com" not in text and "bounced@example.org" in text


def test_works_without_javascript_and_escapes_html(browser, postline):
    context = browser.new_context(viewport=DESKTOP, base_url=postline.url, java_script_enabled=False)
    page = context.new_page()
    try:
        sign_in(page)
        sid = create_service(page, "<img src=x onerror=alert(1)>Evil")
        assert page.get_by_role("heading", level=1).inner_text() == "<img src=x onerror=alert(1)>Evil"
        assert page.locator("main img").count() == 0
        page.goto(f"/services/{sid}/keys")
        page.get_by_label("Name").fill("no-js")
        page.get_by_role("button", name="Create key").click()
        assert page.locator("#new-key").inner_text().startswith("rs_eml_")
        assert not page.locator("button.copy").first.is_visible()  # copy buttons need the script
    finally:
        context.close()


def _inbox_mail(api: Api, **query) -> dict:
    """The newest dev-inbox mail matching ``query`` (waits up to 10 s for it)."""
    r = api.admin("GET", "/dev/inbox", params={**query, "wait": 10})
    assert r.status_code == 200 and r.json()["data"], r.text
    return api.admin("GET", f"/dev/inbox/{r.json()['data'][0]['id']}").json()


def test_edit_preview_publish_and_send_a_template(browser, postline):
    """Templates (docs/templates.md): a person creates one, edits the draft, previews it with
    sample values in the sandboxed frame, sends a test to a verified sandbox recipient and
    publishes it; a send by API key then renders the published version."""
    api = Api(postline.url)
    sid = api.create_service("templated")
    key = api.create_key(sid)
    api.admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "tess@example.com"})
    link = _inbox_mail(api, to="tess@example.com")["links"][0]
    assert api.http.get(link.split(postline.url, 1)[1]).status_code == 200  # the verification link

    page = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=postline.url).new_page()
    page.goto("/")
    page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/services")
    page.goto(f"/services/{sid}/templates")
    page.get_by_label("Name").fill("welcome")
    page.get_by_role("button", name="Create template").click()
    page.wait_for_url(re.compile(r".*/templates/[0-9a-f-]{36}$"))
    template_id = page.url.rsplit("/", 1)[1]
    assert page.locator("#tpl-status").inner_text() == "draft"

    page.get_by_label("Alias").fill("welcome")
    page.get_by_label("Subject").fill("Welcome, {{{NAME}}}")
    page.get_by_label("HTML", exact=True).fill("<h1>Hello {{{NAME}}}</h1><p>{{{PLAN}}} plan</p>")
    page.get_by_label("Variables").fill("NAME string friend\nPLAN string free")
    page.get_by_role("button", name="Save draft").click()
    expect(page.get_by_text("Draft saved.")).to_be_visible()

    page.get_by_label("Sample values").fill("NAME=<b>Ann</b>")
    page.get_by_role("button", name="Preview").click()
    assert page.locator("#preview-subject").inner_text() == "Welcome, <b>Ann</b>"
    frame = page.frame_locator("iframe.mail-html")
    assert frame.locator("h1").inner_text() == "Hello <b>Ann</b>"  # escaped: shown as text, not bold
    assert frame.locator("p").inner_text() == "free plan"  # the fallback
    assert page.locator("iframe.mail-html").get_attribute("sandbox") == ""

    page.get_by_role("button", name="Send test").click()
    notice = page.get_by_text("Test sent to tess@example.com").inner_text()
    test_mail = _inbox_mail(api, email_id=re.search(r"email ([0-9a-f-]{36})", notice).group(1))
    assert test_mail["subject"] == "[Test] Welcome, <b>Ann</b>"
    assert "Hello &lt;b&gt;Ann&lt;/b&gt;" in test_mail["html"]

    page.get_by_role("button", name="Publish the draft").click()
    expect(page.get_by_text("Published: sends use this version now.")).to_be_visible()
    assert page.locator("#tpl-status").inner_text() == "published"
    assert page.get_by_role("cell", name=re.compile("Version 1")).is_visible()
    page.frame_locator("iframe.mail-html").locator("h1").wait_for()  # the preview is drawn again after the POST
    page.get_by_role("heading", name="Preview").scroll_into_view_if_needed()
    shot(page, "template", full_page=False)  # a frame below the fold is not painted in a full-page shot

    sent = api.send(key, {"from": "a@acme.test", "to": "tess@example.com",
                          "template": {"id": "welcome", "variables": {"NAME": "Bob", "PLAN": "pro"}}})
    assert sent.status_code == 200, sent.text
    mail = _inbox_mail(api, email_id=sent.json()["id"])
    assert mail["subject"] == "Welcome, Bob" and "<h1>Hello Bob</h1><p>pro plan</p>" in mail["html"]
    page.goto(f"/services/{sid}/templates")
    assert page.get_by_role("link", name="welcome").get_attribute("href").endswith(template_id)
    page.goto(f"/services/{sid}/messages?template=welcome")  # the log filtered by the template's alias
    reload_until(page, lambda: page.get_by_role("link", name="Welcome, Bob").count() == 1)
    assert page.get_by_role("link", name=re.compile(r"^\[Test\]")).count() == 0  # the test send used no template
    page.get_by_role("link", name="Welcome, Bob").click()
    expect(page.get_by_role("link", name=template_id)).to_be_visible()  # the message names its template
    page.context.close()


def test_audit_log_page_lists_changes_with_actor_and_no_secret(page, postline):
    """The audit log page (shared/audit.py): a service created, renamed over the API and a key
    created in the dashboard appear with actor, action, before → after; the key never does."""
    sign_in(page)
    sid = create_service(page, "Audited")
    r = httpx.patch(f"{postline.url}/api/email/services/{sid}", json={"name": "Audited app"},
                    headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200
    page.goto(f"/services/{sid}/keys")
    page.get_by_label("Name").fill("audited-key")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key").inner_text()

    page.get_by_role("link", name="Audit log").click()
    page.wait_for_url("**/audit-log")
    rows = page.locator("table.audit tbody tr").all_inner_texts()
    rename = next(row for row in rows if "service.updated" in row and sid in row)
    assert '"Audited" → "Audited app"' in rename and "admin_token" in rename
    created = next(row for row in rows if "api_key.created" in row and "audited-key" in row)
    assert "[redacted]" in created and key not in page.content()
    shot(page, "audit-log")

    page.get_by_label("Target").fill(sid)
    page.get_by_role("button", name="Filter").click()
    actions = [row.split("\t")[2] for row in page.locator("table.audit tbody tr").all_inner_texts()]
    assert actions == ["service.updated", "service.created"]
