"""Bad input is a 4xx naming the field, never a 5xx; a real fault is a 5xx with a request
id that the response carries and the log records (issue 16)."""
from __future__ import annotations

import json
import logging

import pytest

from services.api import accept, send_fast_path
from tests.support.inproc import api_runtime, ready_service

SEND = {"from": "a@acme.test", "to": ["ann@example.com"], "subject": "s", "text": "t"}
LONE = "\udfff"


def raw(body) -> bytes:
    """JSON as a client sends it: ``json.dumps`` writes a lone surrogate as ``\\udfff``."""
    return json.dumps(body).encode()


@pytest.mark.parametrize("field, body", [
    ("text", {**SEND, "text": f"a{LONE}b"}),
    ("subject", {**SEND, "subject": f"a{LONE}"}),
    ("headers.X-Note", {**SEND, "headers": {"X-Note": f"v{LONE}"}}),
    ("message", {**SEND, "message": f"<p>{LONE}</p>"}),
    ("to[0]", {**SEND, "to": [f"ann{LONE}@example.com"]}),
    ("attachments[0].filename", {**SEND, "attachments": [{"filename": f"a{LONE}.txt", "content_base64": "YQ=="}]}),
])
async def test_unpaired_surrogates_are_400_naming_the_field(tmp_path, field, body):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        for path, headers in (("/emails", {"Api-Key": key}),
                              (f"/api/email/services/{sid}/send", {"Authorization": f"Bearer {key}"})):
            r = await admin.http.post(path, content=raw(body), headers={**headers, "Content-Type": "application/json"})
            assert r.status_code == 400, r.text
            assert r.json()["error"].startswith(f"{field}: "), r.text
            assert r.headers["X-Request-Id"]


async def test_a_paired_surrogate_escape_is_text(tmp_path):
    """``\\ud83d\\ude00`` is JSON's spelling of 😀: accepted."""
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        body = raw({**SEND, "text": "smile 😀"})
        assert b"\\ud83d\\ude00" in body
        r = await admin.http.post("/emails", content=body, headers={"Api-Key": key, "Content-Type": "application/json"})
        assert r.status_code == 200, r.text


async def test_management_bodies_refuse_surrogates_too(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        r = await admin("POST", "/api/email/services", content=raw({"name": f"x{LONE}"}),
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("name: "), r.text


async def test_batch_items_are_judged_one_by_one(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        items = [SEND, {**SEND, "text": f"a{LONE}b"}, {**SEND, "subject": "third"}]
        r = await admin.http.post("/emails/batch", content=raw(items), headers={
            "Api-Key": key, "Content-Type": "application/json", "x-batch-validation": "permissive"})
        assert r.status_code == 200, r.text
        data, [error] = r.json()["data"], r.json()["errors"]
        assert [d["status"] for d in data] == ["sent", "sent"]
        assert error["index"] == 1
        assert error["message"].startswith("[1].text: contains an unpaired UTF-16 surrogate"), error


@pytest.mark.parametrize("odd", [5, None, "an email", [SEND]])
async def test_a_batch_item_that_is_no_object_is_that_items_error(tmp_path, odd):
    """Permissive: the other items are sent (the whole batch was a 400 before its items were
    judged); strict: the 422 naming the item."""
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        for mode, status in (("permissive", 200), ("strict", 422)):
            r = await admin.http.post("/emails/batch", json=[SEND, odd], headers={"Api-Key": key, "x-batch-validation": mode})
            assert r.status_code == status, r.text
            if mode == "permissive":
                assert len(r.json()["data"]) == 1 and r.json()["errors"][0]["index"] == 1, r.text
                assert r.json()["errors"][0]["message"].startswith("[1]: must be an email object"), r.text
            else:
                assert r.json()["error"].startswith("[1]: must be an email object"), r.text


async def test_a_real_fault_is_5xx_with_a_logged_request_id(tmp_path, caplog):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)

        async def broken(*args, **kwargs):
            raise OSError("disk full")

        rt.log.append_many = rt.log.append_guarded = broken  # the event log failing is an infrastructure fault
        with caplog.at_level(logging.ERROR):
            r = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})
        assert r.status_code == 503, r.text
        rid = r.headers["X-Request-Id"]
        assert r.json()["request_id"] == rid and len(rid) >= 16
        assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)


@pytest.mark.parametrize("content_type", ["application/json",  # the send fast path
                                          "application/json; charset=utf-8"])  # FastAPI's route
async def test_a_bug_in_a_send_is_a_500_with_the_request_id_on_either_path(tmp_path, caplog, monkeypatch, content_type):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)

        async def broken(*args, **kwargs):
            raise RuntimeError("a bug, not an infrastructure fault")

        monkeypatch.setattr(accept, "fetch_remote", broken)  # the first step of the use case both paths run
        with caplog.at_level(logging.ERROR):
            r = await admin.http.post("/emails", content=raw(SEND), headers={"Api-Key": key, "Content-Type": content_type})
        assert r.status_code == 500, r.text
        rid = r.headers["X-Request-Id"]
        assert r.json() == {"error": "internal error", "message": "internal error", "name": "application_error",
                            "statusCode": 500, "request_id": rid}
        assert any(rid in rec.getMessage() and rec.exc_info for rec in caplog.records)


async def test_a_fault_answering_a_send_the_fast_path_took_is_the_apps_500(tmp_path, caplog, monkeypatch):
    """After the send was accepted, before its answer started: the JSON 500, never a bare one."""
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)

        async def broken(*args, **kwargs):
            raise RuntimeError("cannot answer")

        monkeypatch.setattr(send_fast_path, "_answer", broken)
        with caplog.at_level(logging.ERROR):
            r = await admin.http.post("/emails", content=raw(SEND), headers={"Api-Key": key, "Content-Type": "application/json"})
        assert r.status_code == 500, r.text
        assert r.json()["request_id"] == r.headers["X-Request-Id"] and r.json()["error"] == "internal error"
        assert any(r.headers["X-Request-Id"] in rec.getMessage() and rec.exc_info for rec in caplog.records)


async def test_a_client_request_id_is_kept_only_when_it_is_a_token(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        r = await admin("GET", "/api/email/services", headers={"X-Request-Id": "client-abc-12345"})
        assert r.headers["X-Request-Id"] == "client-abc-12345"
        r = await admin("GET", "/api/email/services", headers={"X-Request-Id": "bad id; with spaces"})
        assert r.headers["X-Request-Id"] != "bad id; with spaces"


@pytest.mark.parametrize("filename", ["a.exe.", "a.exe ", "a.EXE. .", "a.js"])
async def test_blocked_extensions_despite_trailing_dots_and_spaces(tmp_path, filename):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        body = {**SEND, "attachments": [{"filename": filename, "content_base64": "YQ=="}]}
        r = await admin.http.post("/emails", json=body, headers={"Api-Key": key})
        assert r.status_code == 400 and r.json()["error"].startswith("attachments[0].filename: has a blocked extension")


@pytest.mark.parametrize("value", [0, 1, "true", "yes"])
async def test_booleans_are_strict(tmp_path, value):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"track_clicks": value})
        assert r.status_code == 400 and r.json()["error"].startswith("track_clicks: "), r.text


async def test_405_lists_every_method_of_the_path(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        r = await admin("PUT", f"/api/email/services/{sid}")
        assert r.status_code == 405
        assert set(r.headers["Allow"].split(", ")) >= {"GET", "PATCH", "DELETE"}, r.headers["Allow"]
        r = await admin("PUT", "/api/email/services")
        assert set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}, r.headers["Allow"]


async def test_unverified_domain_view_matches_its_schema(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        d = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()
        schema = (await admin("GET", "/openapi.json")).json()["components"]["schemas"]["DomainView"]
        assert set(schema["required"]) <= set(d), set(schema["required"]) - set(d)


@pytest.mark.parametrize("ctype", ["tëxt/plaın", "text/plain; charset=utf-8", "text", "text/pl ain", "a/b/c",
                                   "multipart/mixed", "Message/rfc822"])  # composite: no boundary, no base64 (RFC 2046)
async def test_attachment_content_types_are_rfc2045_tokens(tmp_path, ctype):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        body = {**SEND, "attachments": [{"filename": "a.txt", "content_base64": "YQ==", "content_type": ctype}]}
        r = await admin.http.post("/emails", json=body, headers={"Api-Key": key})
        assert r.status_code == 400 and r.json()["error"].startswith("attachments[0].content_type: "), r.text


@pytest.mark.parametrize("content", [b'{"name": "\xff"}', b"[" * 100_000 + b"]" * 100_000, b'{"name": ' + b"9" * 5000 + b"}"])
async def test_a_body_json_cannot_decode_is_400_naming_the_body(tmp_path, content):
    """Not UTF-8, nested too deep, a number over Python's 4,300 digits: FastAPI says only
    "There was an error parsing the body"."""
    async with api_runtime(tmp_path) as (rt, admin):
        r = await admin("POST", "/api/email/services", content=content, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"].startswith("body: not valid JSON"), r.text


async def test_a_replayed_event_id_too_long_is_400_not_a_500(tmp_path):
    """Resend's ``POST /webhooks/{id}/events/{event_id}/replay``: the id is at most 64
    characters (it went into a model outside any validation: a 500 and a dropped connection)."""
    async with api_runtime(tmp_path, webhook_allow_private=True) as (rt, admin):
        sid = await admin.service()
        r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "k", "permission": "full_access"})
        headers = {"Authorization": f"Bearer {r.json()['key']}"}
        hook = await admin.http.post("/webhooks", json={"endpoint": "http://127.0.0.1:9/x", "events": ["email.delivered"]},
                                     headers=headers)
        assert hook.status_code in (200, 201), hook.text
        r = await admin.http.post(f"/webhooks/{hook.json()['id']}/events/{'e' * 65}/replay", headers=headers)
        assert r.status_code == 400 and r.json()["error"].startswith("event_id"), r.text

