"""The Deliverability page and the alert banner in a real browser (Debian's chromium via
Playwright) against a real ``postline all`` delivering over MX to sinks playing Google and
Microsoft (tests/support/provider_mx.py): per-provider counts and rates, a chart per provider,
the top bounce reason, and the bounce-rate alert as a banner on the service page."""
from __future__ import annotations

import time

import pytest

from tests.support.broker import free_port
from tests.support.browser import screenshot_dir
from tests.support.dns_server import DnsServer
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess, production_service
from tests.support.provider_mx import provider_env, provider_sinks

pytestmark = pytest.mark.browser
BODY = {"from": "Acme <hello@acme.test>", "subject": "Hi", "text": "body"}
GONE = "550 5.1.1 <gone@outlook.test>: no such user"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    port, dns = free_port(), DnsServer().start()
    sinks = provider_sinks(dns, port, google={}, microsoft={"rcpt_replies": {"gone@outlook.test": GONE}})
    proc = PostlineProcess(tmp_path_factory.mktemp("deliv") / "data",
                           env={**provider_env(dns, port), "POSTLINE_ALERT_INTERVAL": "0.5"}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    api.admin("PATCH", f"/api/email/services/{sid}", json={"alerts": {"bounce_rate": 0.1, "min_volume": 3}})
    traffic = {"a@gmail.test": "delivered", "b@gmail.test": "delivered", "c@gmail.test": "delivered",
               "d@outlook.test": "delivered", "gone@outlook.test": "bounced"}
    for rcpt, status in traffic.items():
        api.wait_status(key, api.send(key, {**BODY, "to": rcpt}).json()["id"], rcpt, status, timeout=40)
    yield proc, sid
    proc.stop()
    for part in (*sinks.values(), dns):
        part.stop()


@pytest.fixture
def page(browser, service):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=service[0].url)
    p = context.new_page()
    p.goto("/")
    p.get_by_label("Admin token").fill(ADMIN_TOKEN)
    p.get_by_role("button", name="Sign in").click()
    p.wait_for_url("**/services")
    yield p
    context.close()


def reload_until(page, url: str, selector: str, timeout: float = 30) -> None:
    """Reload ``url`` until ``selector`` is on it (the analytics loader's and the alert loop's lag)."""
    deadline = time.monotonic() + timeout
    while True:
        page.goto(url)
        if page.locator(selector).count() or time.monotonic() > deadline:
            return
        time.sleep(0.3)


def test_per_provider_counts_rates_charts_and_bounce_reasons(page, service):
    _, sid = service
    url = f"/services/{sid}/deliverability?period=24h"
    reload_until(page, url, 'tr[data-provider="microsoft"] td.bounced:text("1")')
    google, microsoft = page.locator('tr[data-provider="google"]'), page.locator('tr[data-provider="microsoft"]')
    assert google.locator("td.delivered").inner_text() == "3" and google.locator("td.bounced").inner_text() == "0"
    assert microsoft.locator("td.delivered").inner_text() == "1" and microsoft.locator("td.bounced").inner_text() == "1"
    assert microsoft.locator("td.bounce-rate").inner_text() == "50.00%"
    assert google.locator("td.latency").inner_text().count(" / ") == 2  # p50 / p90 / p99
    assert microsoft.locator("td.latency").inner_text() != "—"
    assert page.locator("section.provider-chart svg.chart").count() == 2
    reasons = page.get_by_role("table", name="Bounce reasons")
    assert "no such user" in reasons.inner_text() and "550" in reasons.inner_text()
    page.get_by_role("link", name="24h").first.wait_for()
    page.locator('nav.tabs a[aria-current="page"]', has_text="Deliverability").wait_for()
    page.screenshot(path=str(screenshot_dir() / "deliverability.png"), full_page=True)


def test_the_bounce_rate_alert_is_a_banner_on_the_service_page(page, service):
    """1 bounce in 5 attempts (20%) is over the service's 10% threshold."""
    _, sid = service
    reload_until(page, f"/services/{sid}", '[data-alert="bounce_rate"]')
    banner = page.locator('[data-alert="bounce_rate"]')
    assert banner.count() == 1 and "bounce rate 20.00%" in banner.inner_text()
    page.get_by_role("link", name="Deliverability").first.click()
    page.wait_for_url(f"**/services/{sid}/deliverability")
    assert page.locator('[data-alert="bounce_rate"]').count() == 1
