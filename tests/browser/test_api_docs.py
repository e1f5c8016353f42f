"""/docs and /redoc render in a real browser with no network beyond Postline itself, and
Swagger UI's Authorize dialog offers the API's credentials."""
from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.support.postline import PostlineProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def postline(tmp_path_factory):
    proc = PostlineProcess(tmp_path_factory.mktemp("docs") / "data").start()
    yield proc
    proc.stop()


def offline_page(browser, base_url: str):
    """A page that may load only from Postline; anything else is aborted and recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside: list[str] = []

    def guard(route):
        if urlparse(route.request.url).netloc == urlparse(base_url).netloc:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    return page, outside


def test_swagger_ui_renders_offline_with_authorize(browser, postline):
    page, outside = offline_page(browser, postline.url)
    page.goto(f"{postline.url}/docs")
    page.wait_for_selector(".opblock", timeout=20_000)
    operations = page.locator(".opblock-summary-path").all_inner_texts()
    assert "/emails" in [op.replace("\u200b", "") for op in operations]
    assert len(operations) > 20
    page.get_by_role("button", name="Authorize").first.click()
    dialog = page.locator(".dialog-ux")
    dialog.wait_for()
    text = dialog.inner_text()
    assert "ApiKey" in text and "AdminToken" in text and "Api-Key" in text
    assert outside == []
    page.close()


def test_redoc_renders_offline(browser, postline):
    page, outside = offline_page(browser, postline.url)
    page.goto(f"{postline.url}/redoc")
    page.get_by_text("Send one email with a service API key", exact=False).first.wait_for(timeout=20_000)
    assert "Postline" in page.title()
    assert outside == []
    page.close()
