"""Open/click tracking and one-click unsubscribe through a real `postline all`: a smarthost
SMTP sink receives the mail, a real DNS server publishes the DKIM keys, a real HTTP receiver
gets the webhooks (verified with `standardwebhooks`)."""
from __future__ import annotations

import json
import re
import smtplib
import time

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, dkim_results, production_service
from tests.support.receiver import Receiver
from tests.support.smtp_sink import SmtpSink

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"
HTML = ('<p>Your order shipped. <a href="https://shop.example/track?o=42&amp;c=DE#map">Track it</a> '
        'or <a href="mailto:help@acme.test">write to us</a>.</p>')
SEND = {"from": "Acme <shop@acme.test>", "subject": "Shipped", "message": HTML}
TRACKED = ("opened", "clicked", "unsubscribed")


@pytest.fixture
def env(tmp_path):
    dns, sink, rx = DnsServer().start(), SmtpSink().start(), Receiver()
    proc = PostlineProcess(tmp_path / "data", env={
        "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
        "POSTLINE_WEBHOOK_ALLOW_PRIVATE": "true"}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    hook = api.admin("POST", f"/api/email/services/{sid}/webhooks", json={"url": rx.url, "events": list(TRACKED)})
    assert hook.status_code == 201, hook.text
    yield {"api": api, "sid": sid, "key": key, "sink": sink, "dns": dns, "rx": rx, "secret": hook.json()["secret"],
           "proc": proc}
    proc.stop()
    rx.stop()
    sink.stop()
    dns.stop()


def delivered_mail(env, email_id: str):
    return env["sink"].wait_for(lambda m: email_id.encode() in m.data)[0]


def local(url: str) -> str:
    """A public tracking URL as a path on the test process (POSTLINE_PUBLIC_URL is its own URL)."""
    return re.sub(r"^http://127\.0\.0\.1:\d+", "", url)


def hooks_of(env, kind: str, n: int = 1) -> list[dict]:
    got = env["rx"].wait(n, predicate=lambda r: json.loads(r["body"])["type"] == kind)
    return [Webhook(env["secret"]).verify(r["body"], {k: r["headers"][k] for k in
                                                      ("webhook-id", "webhook-timestamp", "webhook-signature")})
            for r in got]


def stats_until(env, check, timeout: float = 30) -> dict:
    deadline, totals = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        r = env["api"].admin("GET", f"/api/email/services/{env['sid']}/stats", params={"period": "24h"})
        if r.status_code == 200:
            totals = r.json()["totals"]
            if check(totals):
                return totals
        time.sleep(0.3)
    raise AssertionError(f"stats never matched: {totals}")


def test_open_click_unsubscribe_end_to_end(env):
    api, key = env["api"], env["key"]
    r = api.send(key, {**SEND, "to": "ann@example.com", "track_opens": True, "track_clicks": True,
                       "list_unsubscribe": True})
    assert r.status_code == 200, r.text
    assert r.json()["tracking"] == {"opens": True, "clicks": True, "list_unsubscribe": True}
    email_id = r.json()["id"]
    assert api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["tracking"]["clicks"] is True

    # the delivered message: pixel, rewritten link, untouched text part, DKIM over List-Unsubscribe
    mail = delivered_mail(env, email_id)
    assert dkim_results(mail.data, env["dns"].address) == [True, True]
    assert re.search(rb"h=[^;]*list-unsubscribe\s*:\s*list-unsubscribe-post", mail.data.replace(b"\r\n", b""))
    msg = mail.message
    html = msg.get_body(("html",)).get_content()
    text = msg.get_body(("plain",)).get_content()
    pixel = re.search(r'<img src="([^"]+/t/o/[^"]+)"', html).group(1)
    click = re.search(r'<a href="([^"]+/t/c/[^"]+)">Track it</a>', html).group(1)
    assert 'href="mailto:help@acme.test"' in html and "shop.example" not in html
    assert "https://shop.example/track?o=42&c=DE#map" in text and "/t/" not in text
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub, mailto = re.fullmatch(r"<(http://[^>]+/t/u/[^>]+)>, <mailto:(unsubscribe\+[^>]+@bounces\.acme\.test)>",
                                 msg["List-Unsubscribe"]).groups()

    # open: a burst of fetches (Apple's proxy user agent) is one `opened`, flagged machine
    for _ in range(3):
        got = api.http.get(local(pixel), headers={"User-Agent": "Mozilla/5.0"})
        assert got.status_code == 200 and got.headers["content-type"] == "image/gif"
        assert "no-store" in got.headers["cache-control"]
    opened = hooks_of(env, "opened")[0]
    assert opened["data"]["email_id"] == email_id and opened["data"]["recipient"] == "ann@example.com"
    assert opened["data"]["machine"] is True and opened["data"]["user_agent"] == "Mozilla/5.0"
    # the message's fields, as every lifecycle event has them, though the pixel carries none
    assert (opened["data"]["subject"], opened["data"]["from"]) == (SEND["subject"], SEND["from"])

    # click: 302 to the exact original URL
    got = api.http.get(local(click), headers={"User-Agent": CHROME})
    assert got.status_code == 302 and got.headers["location"] == "https://shop.example/track?o=42&c=DE#map"
    clicked = hooks_of(env, "clicked")[0]["data"]
    assert clicked["url"] == "https://shop.example/track?o=42&c=DE#map" and clicked["user_agent"] == CHROME
    assert isinstance(clicked["machine"], bool) and clicked["subject"] == SEND["subject"]

    # tampered tokens: 404, never a Location
    for bad in (click[:-3] + ("AAA" if not click.endswith("AAA") else "BBB"), pixel.replace("/t/o/", "/t/c/")):
        got = api.http.get(local(bad))
        assert got.status_code == 404 and "location" not in got.headers and "error" in got.json()
    assert api.http.post(local(unsub)[:-2] + "xx", content=b"List-Unsubscribe=One-Click").status_code == 404

    # unsubscribe: GET shows a page and changes nothing; a POST without the one-click body is 400
    page = api.http.get(local(unsub))
    assert page.status_code == 200 and "<form method=post>" in page.text and "ann@example.com" in page.text
    sup = f"/api/email/services/{env['sid']}/suppressions/ann@example.com"
    assert api.admin("GET", sup).status_code == 404
    assert api.http.post(local(unsub), content=b"hello=1",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 400
    assert api.admin("GET", sup).status_code == 404
    done = api.http.post(local(unsub), content=b"List-Unsubscribe=One-Click",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200, done.text
    assert api.admin("GET", sup).json()["reason"] == "unsubscribe"
    assert hooks_of(env, "unsubscribed")[0]["data"]["recipient"] == "ann@example.com"

    # the next send to that address is dropped as suppressed
    again = api.send(key, {**SEND, "to": "ann@example.com"}).json()
    assert again["status"] == "failed" and again["dropped"] == [{"recipient": "ann@example.com", "reason": "suppressed"}]

    # stats and the timeline
    totals = stats_until(env, lambda t: t["opened"] == 1 and t["clicked"] == 1 and t["unsubscribed"] == 1)
    assert totals["unique_opened"] == 1 and totals["unique_clicked"] == 1
    record = api.wait_status(key, email_id, "ann@example.com", "unsubscribed")
    assert {"opened", "clicked", "unsubscribed"} <= {e["type"] for e in record["events"]}
    assert len(env["rx"].wait(3)) == 3  # exactly one of each, the pixel burst included


def test_service_defaults_per_message_override_and_tracking_off(env):
    api, key, sid = env["api"], env["key"], env["sid"]
    r = api.admin("PATCH", f"/api/email/services/{sid}", json={"track_opens": True, "list_unsubscribe": True})
    assert r.status_code == 200 and r.json()["list_unsubscribe"] is True and r.json()["track_clicks"] is False
    assert api.admin("PATCH", f"/api/email/services/{sid}", json={"track_opens": 1}).status_code == 400
    bad = api.send(key, {**SEND, "to": "x@example.com", "track_clicks": 0})
    assert bad.status_code == 400 and "track_clicks" in bad.json()["error"]

    by_default = api.send(key, {**SEND, "to": "bob@example.com"}).json()
    assert by_default["tracking"] == {"opens": True, "clicks": False, "list_unsubscribe": True}
    msg = delivered_mail(env, by_default["id"]).message
    html = msg.get_body(("html",)).get_content()
    assert "/t/o/" in html and 'href="https://shop.example/track?o=42&amp;c=DE#map"' in html
    assert msg["List-Unsubscribe"] is not None

    off = api.send(key, {**SEND, "to": "cy@example.com", "track_opens": False, "list_unsubscribe": False}).json()
    assert off["tracking"] == {"opens": False, "clicks": False, "list_unsubscribe": False}
    raw = delivered_mail(env, off["id"]).data
    assert b"/t/" not in raw and b"List-Unsubscribe" not in raw
    assert dkim_results(raw, env["dns"].address) == [True, True]

    batch = api.http.post("/emails/batch", headers={"Api-Key": key}, json=[
        {**SEND, "to": "dee@example.com", "track_clicks": True, "track_opens": False, "list_unsubscribe": False}])
    item = batch.json()["data"][0]
    assert item["tracking"] == {"opens": False, "clicks": True, "list_unsubscribe": False}
    html = delivered_mail(env, item["id"]).message.get_body(("html",)).get_content()
    assert "/t/c/" in html and "/t/o/" not in html
    door = api.http.post(f"/api/email/services/{sid}/send", headers={"Authorization": f"Bearer {key}"},
                         json={**SEND, "to": "eve@example.com", "track_opens": False})
    assert door.json()["tracking"]["opens"] is False


def test_pixel_head_and_unknown_paths(env):
    api = env["api"]
    assert api.http.get("/t/o/not-a-token").status_code == 404
    assert api.http.head("/t/c/AAAA").status_code == 404
    assert httpx.get(f"{env['proc'].url}/t/c/", follow_redirects=False).status_code == 404


def test_mailto_unsubscribe_through_the_inbound_listener(env):
    """RFC 2369 mailto: a mail to the address in List-Unsubscribe suppresses the recipient."""
    api, key = env["api"], env["key"]
    email_id = api.send(key, {**SEND, "to": ["x@example.com", "fay@example.com"], "list_unsubscribe": True}).json()["id"]
    msgs = env["sink"].wait_for(lambda m: email_id.encode() in m.data and m.rcpt_tos == ["fay@example.com"])
    mailto = re.search(r"<mailto:([^>]+)>", msgs[0].message["List-Unsubscribe"]).group(1)
    api.wait_status(key, email_id, "fay@example.com", "delivered")
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", int(env["proc"].env["POSTLINE_INBOUND_SMTP_PORT"]), timeout=10) as s:
                s.sendmail("fay@example.com", [mailto], b"Subject: unsubscribe\r\n\r\nplease\r\n")
            break
        except smtplib.SMTPDataError as exc:  # 451 until analytics has the message, as for bounces
            if exc.smtp_code != 451 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    sup = api.admin("GET", f"/api/email/services/{env['sid']}/suppressions/fay@example.com").json()
    assert sup["reason"] == "unsubscribe" and sup["source_email_id"] == email_id
    assert api.admin("GET", f"/api/email/services/{env['sid']}/suppressions/x@example.com").status_code == 404
    data = hooks_of(env, "unsubscribed")[0]["data"]
    assert data["recipient"] == "fay@example.com"
    assert data["subject"] == SEND["subject"] and data["from"] == SEND["from"]  # as every lifecycle event
    with smtplib.SMTP("127.0.0.1", int(env["proc"].env["POSTLINE_INBOUND_SMTP_PORT"]), timeout=10) as s:
        forged = mailto.replace("unsubscribe+", "unsubscribe+a")
        s.ehlo()
        assert s.docmd("MAIL FROM:<a@b.c>")[0] == 250 and s.docmd(f"RCPT TO:<{forged}>")[0] == 550


@pytest.mark.browser
async def test_unsubscribe_page_in_a_browser_without_javascript(env):
    """A person opening the link sees the page; only pressing the button unsubscribes.
    (Playwright's async API: the sync one would leave its loop running for later async tests.)"""
    from playwright.async_api import async_playwright

    from tests.support.browser import launch

    api, key = env["api"], env["key"]
    email_id = api.send(key, {**SEND, "to": "gus@example.com", "list_unsubscribe": True}).json()["id"]
    header = delivered_mail(env, email_id).message["List-Unsubscribe"]
    link = re.search(r"<(http://[^>]+/t/u/[^>]+)>", header).group(1)
    sup = f"/api/email/services/{env['sid']}/suppressions/gus@example.com"
    async with async_playwright() as pw:
        browser = await launch(pw)
        try:
            page = await (await browser.new_context(java_script_enabled=False)).new_page()
            assert (await page.goto(link)).status == 200
            assert "gus@example.com" in await page.inner_text("body")
            assert api.admin("GET", sup).status_code == 404
            async with page.expect_navigation():
                await page.click("button[type=submit]")
            assert "You are unsubscribed" in await page.inner_text("h1")
        finally:
            await browser.close()
    assert api.admin("GET", sup).json()["reason"] == "unsubscribe"
