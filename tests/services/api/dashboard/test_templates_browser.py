"""The templates pages in a real browser (Debian's chromium via Playwright) against a real
``postline all`` process with its dev inbox: a person creates a template, edits the draft,
previews it with sample values in the sandboxed frame, publishes it, sends a test to a
verified sandbox recipient, and a send by API key then renders the published version."""
from __future__ import annotations

import re

import pytest

from tests.support.browser import screenshot_dir
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def postline(tmp_path_factory):
    proc = PostlineProcess(tmp_path_factory.mktemp("tpl") / "data").start()
    yield proc
    proc.stop()


def inbox_mail(api: Api, **query) -> dict:
    """The newest dev-inbox mail matching ``query`` (waits up to 10 s for it)."""
    r = api.admin("GET", "/dev/inbox", params={**query, "wait": 10})
    assert r.status_code == 200 and r.json()["data"], r.text
    return api.admin("GET", f"/dev/inbox/{r.json()['data'][0]['id']}").json()


def test_edit_preview_publish_and_send_a_template(browser, postline):
    api = Api(postline.url)
    sid = api.create_service("templated")
    key = api.create_key(sid)
    api.admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "ann@example.com"})
    link = inbox_mail(api, to="ann@example.com")["links"][0]
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
    assert page.get_by_text("Draft saved.").is_visible()

    page.get_by_label("Sample values").fill("NAME=<b>Ann</b>")
    page.get_by_role("button", name="Preview").click()
    assert page.locator("#preview-subject").inner_text() == "Welcome, <b>Ann</b>"
    frame = page.frame_locator("iframe.mail-html")
    assert frame.locator("h1").inner_text() == "Hello <b>Ann</b>"  # escaped: shown as text, not bold
    assert frame.locator("p").inner_text() == "free plan"  # the fallback
    assert page.locator("iframe.mail-html").get_attribute("sandbox") == ""

    page.get_by_role("button", name="Send test").click()
    notice = page.get_by_text("Test sent to ann@example.com").inner_text()
    test_mail = inbox_mail(api, email_id=re.search(r"email ([0-9a-f-]{36})", notice).group(1))
    assert test_mail["subject"] == "[Test] Welcome, <b>Ann</b>"
    assert "Hello &lt;b&gt;Ann&lt;/b&gt;" in test_mail["html"]

    page.get_by_role("button", name="Publish the draft").click()
    assert page.get_by_text("Published: sends use this version now.").is_visible()
    assert page.locator("#tpl-status").inner_text() == "published"
    assert page.get_by_role("cell", name=re.compile("Version 1")).is_visible()
    page.screenshot(path=str(screenshot_dir() / "template.png"), full_page=True)

    sent = api.send(key, {"from": "a@acme.test", "to": "ann@example.com",
                          "template": {"id": "welcome", "variables": {"NAME": "Bob", "PLAN": "pro"}}})
    assert sent.status_code == 200, sent.text
    mail = inbox_mail(api, email_id=sent.json()["id"])
    assert mail["subject"] == "Welcome, Bob" and "<h1>Hello Bob</h1><p>pro plan</p>" in mail["html"]
    page.goto(f"/services/{sid}/templates")
    assert page.get_by_role("link", name="welcome").get_attribute("href").endswith(template_id)
    page.context.close()
