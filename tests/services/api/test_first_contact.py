"""What a new user meets first: required subject, a clear 415 for non-JSON bodies, a
service's own rate limits, one access-log line per request, the OpenAPI security schemes
and a CLI whose help says what each command reads."""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from services.cli import ENV
from shared import events as ev
from shared.settings import Settings
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN

ANN = "ann@example.com"
SEND = {"from": "a@acme.test", "to": [ANN], "subject": "s", "text": "t"}


async def sandbox_service(rt, admin) -> tuple[str, str]:
    """A sandbox service with a key and ``ANN`` verified as its recipient."""
    sid = await admin.service()
    key = await admin.key(sid)
    await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": ANN})
    rec = next(r for r in rt.control.state.sandbox.values() if r.service_id == sid)
    await rt.control.save(rec.model_copy(update={"verified": True, "token_hash": None, "id": ev.new_id()}))
    return sid, key


async def test_subject_is_required_on_both_doors_and_in_batch(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await sandbox_service(rt, admin)
        body = {k: v for k, v in SEND.items() if k != "subject"}
        r1 = await admin.http.post("/emails", json=body, headers={"Api-Key": key})
        r2 = await admin.http.post(f"/api/email/services/{sid}/send", json=body, headers={"Authorization": f"Bearer {key}"})
        for r in (r1, r2):
            assert r.status_code == 400 and r.json()["error"].startswith("subject"), r.text
        batch = await admin.http.post("/emails/batch", json=[body, SEND], headers={"Api-Key": key})
        assert batch.status_code == 422 and batch.json()["error"].startswith("[0].subject"), batch.text


async def test_a_body_that_is_not_json_gets_415_naming_the_header(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await sandbox_service(rt, admin)
        # what `curl -d '{...}'` sends without -H 'content-type: application/json'
        r = await admin.http.post("/emails", content=json.dumps(SEND), headers={
            "Api-Key": key, "Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and "Content-Type: application/json" in r.json()["error"], r.text
        r = await admin("POST", "/api/email/services", content=b'{"name":"x"}', headers={"Content-Type": "text/plain"})
        assert r.status_code == 415, r.text
        ok = await admin.http.post("/emails", content=json.dumps(SEND),
                                   headers={"Api-Key": key, "Content-Type": "application/json; charset=utf-8"})
        assert ok.status_code == 200, ok.text


async def test_admin_sets_a_services_own_rate_limits(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await sandbox_service(rt, admin)
        other, other_key = await sandbox_service(rt, admin)
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": 2, "per_day": 500}})
        assert r.status_code == 200, r.text
        limits = r.json()["rate_limits"]
        assert (limits["per_minute"], limits["per_day"], limits["overridden"]) == (2, 500, True)
        codes = [(await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert (await admin.http.post("/emails", json=SEND, headers={"Api-Key": other_key})).status_code == 200
        # a field left out keeps its override; null clears it; rate_limits: null clears both
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_day": None}})
        assert (r.json()["rate_limits"]["per_minute"], r.json()["rate_limits"]["per_day"]) == (2, 10_000)
        r = await admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": None})
        assert r.json()["rate_limits"]["per_minute"] == 600 and r.json()["rate_limits"]["overridden"] is False
        bad = await admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": 0}})
        assert bad.status_code == 400 and bad.json()["error"].startswith("rate_limits.per_minute"), bad.text
        seen = (await admin("GET", f"/api/email/services/{sid}")).json()["rate_limits"]
        assert seen["per_minute"] == 600


async def test_one_access_log_line_per_request_without_secrets(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="postline.access")
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await sandbox_service(rt, admin)
        caplog.clear()
        first = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})
        sent = first.json()
        await admin.http.post("/emails", json={**SEND, "to": "nope"}, headers={"Api-Key": key})
        await admin("GET", f"/api/email/services/{sid}")
        await admin.http.get("/no/such/path")
    lines = [r.fields for r in caplog.records if r.name == "postline.access"]
    assert [(x["method"], x["route"], x["status"]) for x in lines] == [
        ("POST", "/emails", 200), ("POST", "/emails", 400),
        ("GET", "/api/email/services/{service_id}", 200), ("GET", None, 404)]
    assert lines[0]["service_id"] == sid and lines[0]["email_id"] == sent["id"] and lines[0]["ms"] >= 0
    assert lines[0]["request_id"] == first.headers["X-Request-Id"]
    assert lines[2]["service_id"] == sid
    text = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert key not in text and ADMIN_TOKEN not in text and ANN not in text


async def test_openapi_declares_the_credentials(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        doc = (await admin.http.get("/openapi.json")).json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "Api-Key",
                                 "description": schemes["ApiKey"]["description"]}
    assert schemes["AdminToken"]["scheme"] == "bearer" and schemes["ApiKeyBearer"]["scheme"] == "bearer"
    send = doc["paths"]["/emails"]["post"]["security"]
    assert {"ApiKey": []} in send and {"ApiKeyBearer": []} in send
    assert doc["paths"]["/api/email/services"]["post"]["security"] == [{"AdminToken": []}]


def cli(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "services.cli", *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_cli_help_lists_every_command_and_what_it_reads():
    top = cli("--help")
    for command in ("all", "api", "relay", "webhooks", "analytics", "migrate", "workspace", "rotate-token"):
        assert command in top
    assert "``" not in top
    for command in ("all", "api", "relay", "webhooks", "analytics", "migrate", "workspace"):
        text = cli(command, "--help")
        assert "environment variables read:" in text and "POSTLINE_DATA_DIR" in text, command
    assert "POSTLINE_SMARTHOST" in cli("relay", "--help") and "POSTLINE_ADMIN_TOKEN" in cli("api", "--help")


@pytest.mark.parametrize("group", sorted(ENV))
def test_cli_names_only_real_settings(group):
    fields = {f"POSTLINE_{name.upper()}" for name in Settings.model_fields}
    assert set(ENV[group]) <= fields


async def test_dev_inbox_shows_a_workspace_only_its_own_mail_decoded(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await sandbox_service(rt, admin)
        first = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})
        sent = first.json()
        raw = (f"From: a@acme.test\r\nTo: {ANN}\r\nSubject: s\r\nX-Postline-Id: {sent['id']}\r\n"
               "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
               "Follow http://127.0.0.1:8080/verify?token=3Dabc=\r\ndef to continue\r\n").encode()
        mail_id = await rt.inbox.store("bounces@acme.test", [ANN], raw)  # what the relay captures
        _, other_token = await rt.create_workspace("other")
        other = admin.as_token(other_token)
        assert (await other("GET", "/dev/inbox")).json()["data"] == []
        assert (await other("GET", f"/dev/inbox/{mail_id}")).status_code == 404
        assert (await other("GET", f"/dev/inbox/{mail_id}.eml")).status_code == 404
        listed = (await admin("GET", "/dev/inbox", params={"email_id": sent["id"]})).json()["data"]
        assert [m["id"] for m in listed] == [mail_id]
        mail = (await admin("GET", f"/dev/inbox/{mail_id}")).json()
        assert mail["links"] == ["http://127.0.0.1:8080/verify?token=abcdef"]  # quoted-printable decoded
        assert (await admin("GET", f"/dev/inbox/{mail_id}.eml")).content == raw
