"""The ``machine`` rules of opens and clicks (docs/tracking.md)."""
from __future__ import annotations

from services.api.machine import is_machine

CHROME = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36"


def test_people_are_not_machines():
    assert not is_machine(CHROME)
    assert not is_machine(CHROME, "GET", 3600, "click")
    assert not is_machine("Mozilla/5.0 (Linux; Android 10; CUBOT X30) AppleWebKit/537.36 Chrome/120.0 Mobile")
    assert not is_machine("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko)")


def test_proxies_scanners_and_automation_are_machines():
    for ua in ["Mozilla/5.0", "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
               "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
               "Mozilla/5.0 (compatible; BingPreview/1.0b)", "Barracuda Sentinel (EE)", "Mimecast URL scanner",
               "Proofpoint URL Defense", "python-httpx/0.28", "curl/8.5.0", "Googlebot/2.1",
               "Mozilla/5.0 (compatible; AhrefsBot/7.0)", "Microsoft Office Existence Discovery", "", None]:
        assert is_machine(ua), ua
    assert is_machine(CHROME, "HEAD")
    assert is_machine(CHROME, "GET", 0.5, "click")  # faster than any reader
    assert not is_machine(CHROME, "GET", 0.5, "open")
