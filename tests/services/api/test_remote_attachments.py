"""Remote attachments (``path``, services/api/remote_attachments.py) and inline parts
(``content_id``) at the API: fetched at accept time from a real HTTP server on loopback (the
SSRF guard lets loopback through only with POSTLINE_WEBHOOK_ALLOW_PRIVATE, as the webhook tests
do), and every failure a 422 naming the attachment."""
from __future__ import annotations

import base64

import pytest

from services.api.context import ApiContext
from services.api.remote_attachments import fetch_remote
from services.api.schemas import SendEmail
from shared.message_size import MAX_MESSAGE_BYTES
from tests.support.broker import free_port
from tests.support.file_server import FileServer
from tests.support.inproc import api_runtime, ready_service

SEND = {"from": "a@acme.test", "to": ["ann@example.com"], "subject": "s", "html": "<p>see attached</p>"}
PDF = b"%PDF-1.4\n% remote invoice\n"


@pytest.fixture(scope="module")
def files():
    server = FileServer()
    yield server
    server.stop()


def with_files(*attachments: dict) -> dict:
    return {**SEND, "attachments": list(attachments)}


async def test_path_is_fetched_into_the_request(tmp_path, files):
    url = files.serve("/files/invoice.pdf", PDF, headers={"Content-Type": "application/pdf"})
    files.serve("/files/logo", b"\x89PNG fake", headers={"Content-Type": "application/octet-stream"})
    async with api_runtime(tmp_path, webhook_allow_private=True) as (rt, admin):
        body = SendEmail.model_validate(with_files(
            {"filename": "a.txt", "content": "aGk="}, {"path": url},
            {"path": files.url("/files/logo"), "filename": "logo.png", "content_id": "logo"}))
        got = await fetch_remote(ApiContext.of(rt), body)
    assert isinstance(got, SendEmail), got
    first, invoice, logo = got.attachments
    assert first == body.attachments[0]  # content given inline is left as it is
    assert (invoice.filename, invoice.content_type, invoice.path) == ("invoice.pdf", "application/pdf", None)
    assert base64.b64decode(invoice.content_base64) == PDF
    # a generic served type: the file name's; the inline part keeps its content id
    assert (logo.content_type, logo.content_id) == ("image/png", "logo")
    assert files.requests[-1]["headers"]["user-agent"].startswith("Postline-Attachments/")


async def test_redirects_are_followed(tmp_path, files):
    files.serve("/real.csv", b"a,b\n1,2\n", headers={"Content-Type": "text/csv; charset=utf-8"})
    url = files.redirect("/moved.csv", "/real.csv")
    async with api_runtime(tmp_path, webhook_allow_private=True) as (rt, admin):
        got = await fetch_remote(ApiContext.of(rt), SendEmail.model_validate(with_files({"path": url})))
    assert isinstance(got, SendEmail), got
    assert got.attachments[0].content_type == "text/csv" and got.attachments[0].filename == "moved.csv"
    assert base64.b64decode(got.attachments[0].content_base64) == b"a,b\n1,2\n"


def big_url(files) -> str:
    return files.serve("/big.bin", b"\0" * (MAX_MESSAGE_BYTES * 3 // 4), headers={"Content-Length": None})


async def test_a_failed_fetch_is_422_naming_the_attachment(tmp_path, files):
    cases = {
        "missing": (files.url("/nothing-here.pdf"), "answered 404"),
        "server error": (files.serve("/broken.pdf", b"oops", status=500), "answered 500"),
        "unreachable": (f"http://127.0.0.1:{free_port()}/gone.pdf", "cannot fetch"),
        "empty": (files.serve("/empty.pdf", b""), "the file is empty"),
        "declared too large": (files.serve("/huge.pdf", b"x", headers={"Content-Length": str(MAX_MESSAGE_BYTES)}),
                               "larger than the"),
        "streamed too large": (files.serve("/big.bin", b"\0" * (MAX_MESSAGE_BYTES * 3 // 4), headers={"Content-Length": None}),
                               "larger than the"),
        "slow": (files.serve("/slow.pdf", PDF, delay=3), "not fetched within 1 s"),
        "redirect loop": (files.redirect("/loop.pdf", "/loop.pdf"), "more than 5 redirects"),
    }
    async with api_runtime(tmp_path, webhook_allow_private=True, attachment_fetch_timeout=1) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        for case, (url, expected) in cases.items():
            r = await admin.http.post("/emails", headers={"Api-Key": key}, json=with_files(
                {"filename": "ok.txt", "content": "aGk="}, {"path": url}))
            error = r.json()["error"]
            assert r.status_code == 422 and error.startswith("attachments[1].path: ") and expected in error, (case, r.text)


async def test_private_addresses_are_refused_without_the_setting(tmp_path, files):
    """The webhook SSRF guard: loopback, private and link-local targets, by address or by name."""
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        for url in (files.serve("/secret.pdf", PDF), "http://10.1.2.3/a.pdf", "http://[::1]:9/a.pdf",
                    "http://169.254.169.254/latest/meta-data/iam", "http://localhost/a.pdf"):
            r = await admin.http.post("/emails", headers={"Api-Key": key}, json=with_files({"path": url}))
            assert r.status_code == 422 and r.json()["error"].startswith("attachments[0].path: refused: "), r.text
            assert "non-public address" in r.json()["error"]
    assert not [req for req in files.requests if req["path"] == "/secret.pdf"]  # never connected


async def test_every_redirect_hop_is_checked(tmp_path, files):
    url = files.redirect("/to-ftp.pdf", "ftp://files.acme.test/a.pdf")
    async with api_runtime(tmp_path, webhook_allow_private=True) as (rt, admin):
        got = await fetch_remote(ApiContext.of(rt), SendEmail.model_validate(with_files({"path": url})))
    assert got.status == 422 and got.text == ("attachments[0].path: a redirect to ftp://files.acme.test/a.pdf: "
                                              "must be an http:// or https:// URL"), got


async def test_bad_attachment_fields_are_400_naming_the_field(tmp_path):
    cases = [
        ({"path": "ftp://files.acme.test/a.pdf"}, "attachments[0].path: must be an http:// or https:// URL"),
        ({"path": "https://user:pw@files.acme.test/a.pdf"}, "attachments[0].path: must not contain credentials"),
        # what the HTTP client would refuse to fetch (it raised past the guard: a 500)
        ({"filename": "x.pdf", "path": "http://93.184.216.34/a\r\nb.pdf"}, "attachments[0].path: must not contain spaces"),
        ({"filename": "x.pdf", "path": "http://files.acme.test/a\x00b.pdf"}, "attachments[0].path: must not contain spaces"),
        ({"path": "https://files.acme.test/a.pdf", "content": "aGk=", "filename": "a.pdf"},
         "attachments[0]: content: give either content or path, not both"),
        ({"filename": "a.pdf"}, "attachments[0]: content: field required"),
        ({"path": "https://files.acme.test/run.exe"}, "attachments[0].filename: has a blocked extension (exe)"),
        ({"filename": "a.png", "content": "aGk=", "content_id": "has space"}, "attachments[0].content_id: must be"),
        ({"filename": "a.png", "content": "aGk=", "content_id": "a", "inline_content_id": "b"},
         "attachments[0]: content_id: give either content_id or inline_content_id, not both"),
    ]
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        for attachment, error in cases:
            r = await admin.http.post("/emails", headers={"Api-Key": key}, json=with_files(attachment))
            assert r.status_code == 400 and r.json()["error"].startswith(error), r.text


def test_content_ids_are_unique_and_resends_forms_are_read():
    logo = {"filename": "logo.png", "content": "aGk="}
    with pytest.raises(ValueError, match=r"attachments\[1\]\.content_id: 'logo' is already the content_id of attachments\[0\]"):
        SendEmail.model_validate(with_files({**logo, "content_id": "logo"}, {**logo, "inline_content_id": "logo"}))
    body = SendEmail.model_validate(with_files({**logo, "content_id": "<logo@acme>"}, {**logo, "inline_content_id": "x"}))
    assert [a.content_id for a in body.attachments] == ["logo@acme", "x"]  # <…> dropped, as Resend's Node SDK does
    remote = SendEmail.model_validate(with_files({"path": "https://cdn.acme.test/files/Q3%20report.pdf?sig=1"}))
    assert remote.attachments[0].filename == "Q3 report.pdf"
