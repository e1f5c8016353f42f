"""Control plane: event-sourced state survives restarts, secrets stay secret, tenants are
isolated on every route, bad input is a 400 naming the field."""
from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import pytest

from services.api.app import create_app
from shared import events as ev
from shared.crypto import hash_secret
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN

SEND = {"from": "a@acme.test", "to": ["ann@example.com"], "subject": "s", "text": "t"}


async def setup_service(admin) -> dict:
    sid = await admin.service()
    key = await admin.key(sid)
    d = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()
    sb = (await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "ann@example.com"})).json()
    keys = (await admin("GET", f"/api/email/services/{sid}/api-keys")).json()["data"]
    # a public IP literal: resolving it needs no network, and nothing is sent in these tests
    hook = (await admin("POST", f"/api/email/services/{sid}/webhooks",
                        json={"url": "https://93.184.215.14/hook", "events": ["delivered"]})).json()
    tid = (await admin("POST", f"/api/email/services/{sid}/templates", json={"name": "t", "html": "<p>x</p>"})).json()["id"]
    await admin("POST", f"/api/email/services/{sid}/templates/{tid}/publish")
    version = (await admin("GET", f"/api/email/services/{sid}/templates/{tid}")).json()["versions"][0]["id"]
    return {"sid": sid, "key": key, "key_id": keys[0]["id"], "domain_id": d["id"], "recipient_id": sb["id"],
            "webhook_id": hook["id"], "template_id": tid, "version_id": version}


async def test_state_survives_restart(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        ids = await setup_service(admin)
        rec = next(iter(rt.control.state.sandbox.values()))
        await rt.control.save(rec.model_copy(update={"verified": True, "token_hash": None, "id": ev.new_id()}))
        await admin("PATCH", f"/api/email/services/{ids['sid']}", json={"name": "renamed", "track_opens": True})
    async with api_runtime(tmp_path) as (rt, admin):
        svc = (await admin("GET", f"/api/email/services/{ids['sid']}")).json()
        assert svc["name"] == "renamed" and svc["track_opens"] is True
        domains = (await admin("GET", f"/api/email/services/{ids['sid']}/domains")).json()["data"]
        assert [d["id"] for d in domains] == [ids["domain_id"]]
        sandbox = (await admin("GET", f"/api/email/services/{ids['sid']}/sandbox-emails")).json()["data"]
        assert sandbox[0]["verified"] is True
        r = await admin.http.post("/emails", json=SEND, headers={"Api-Key": ids["key"]})
        assert r.status_code == 200, r.text


async def test_secrets_never_in_plain_text(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    async with api_runtime(tmp_path) as (rt, admin):
        ids = await setup_service(admin)
        domain = rt.control.state.domains[ids["domain_id"]]
        from shared.crypto import unseal

        rsa_pem = unseal(rt.settings.master_key, domain.rsa_private_sealed, domain.domain_id)
        later = [await admin("GET", f"/api/email/services/{ids['sid']}/domains/{ids['domain_id']}"),
                 await admin("GET", f"/api/email/services/{ids['sid']}/domains"),
                 await admin("GET", f"/api/email/services/{ids['sid']}/api-keys")]
    log_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("log.sqlite3*"))
    pem_body = b"".join(rsa_pem.splitlines()[1:3])
    for secret in (ids["key"].encode(), ADMIN_TOKEN.encode(), b"PRIVATE KEY", pem_body):
        assert secret not in log_bytes
        assert all(secret not in r.content for r in later)
        assert secret.decode() not in caplog.text
    assert hash_secret(ids["key"]).encode() in log_bytes  # only the hash is kept


async def test_tenant_isolation_on_every_route(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        a = await setup_service(admin)
        other_id, other_token = await rt.create_workspace("other")
        b_admin = admin.as_token(other_token)
        b = await setup_service(b_admin)
        sent = (await admin.http.post(f"/api/email/services/{a['sid']}/send", json=SEND,
                                      headers={"Authorization": f"Bearer {a['key']}"})).json()
        checked = 0
        for path, operations in create_app(rt).openapi()["paths"].items():
            if "{service_id}" not in path or path.endswith("/send"):
                continue
            url = path.format(service_id=a["sid"], domain_id=a["domain_id"], key_id=a["key_id"],
                              recipient_id=a["recipient_id"], email="x@example.com",
                              webhook_id=a["webhook_id"], template_id=a["template_id"], version_id=a["version_id"],
                              email_id=ev.new_id(), attachment_id="a1", rule_id=ev.new_id(), event_id=ev.new_id())
            for method in operations:
                r = await b_admin(method.upper(), url, json={})
                assert r.status_code == 404, (method, path, r.status_code, r.text)
                assert "error" in r.json()
                checked += 1
        assert checked >= 24
        # B's own ids do not become reachable through A's service either
        r = await admin("DELETE", f"/api/email/services/{a['sid']}/api-keys/{b['key_id']}")
        assert r.status_code == 404
        r = await admin("GET", f"/api/email/services/{a['sid']}/domains/{b['domain_id']}")
        assert r.status_code == 404
        # a key of B cannot send for A, nor read A's email
        r = await admin.http.post(f"/api/email/services/{a['sid']}/send", json=SEND,
                                  headers={"Authorization": f"Bearer {b['key']}"})
        assert r.status_code == 403
        r = await admin.http.get(f"/emails/{sent['id']}", headers={"Api-Key": b["key"]})
        assert r.status_code == 404
        r = await admin.http.get(f"/emails/{sent['id']}", headers={"Api-Key": a["key"]})
        assert r.status_code == 200
        assert len((await b_admin("GET", "/api/email/services")).json()["data"]) == 1


async def test_auth_errors(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        ids = await setup_service(admin)
        assert (await admin.http.get("/api/email/services")).status_code == 401
        assert (await admin.as_token("nope")("GET", "/api/email/services")).status_code == 401
        assert (await admin.http.post("/emails", json=SEND)).status_code == 401
        r = await admin.http.post("/emails", json=SEND, headers={"Api-Key": "rs_eml_" + "x" * 32})
        # the seed's {"error"} and, for Resend's SDKs, message/name/statusCode (services/api/errors.py)
        assert r.status_code == 401 and r.json() == {"error": "invalid API key", "message": "invalid API key",
                                                     "name": "invalid_api_key", "statusCode": 401}
        r = await admin.http.post("/emails", json=SEND)
        assert r.json()["name"] == "missing_api_key" and r.json()["statusCode"] == 401
        await admin("PATCH", f"/api/email/services/{ids['sid']}", json={"status": "disabled"})
        r = await admin.http.post("/emails", json=SEND, headers={"Api-Key": ids["key"]})
        assert r.status_code == 403 and "disabled" in r.json()["error"]
        assert r.headers["RateLimit-Limit"] and r.headers["RateLimit-Remaining"]  # on every send answer


async def test_revoked_key_is_refused_at_once(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        ids = await setup_service(admin)
        r = await admin.http.post(f"/api/email/services/{ids['sid']}/send", json=SEND,
                                  headers={"Authorization": f"Bearer {ids['key']}"})
        assert r.status_code == 200
        assert (await admin("DELETE", f"/api/email/services/{ids['sid']}/api-keys/{ids['key_id']}")).status_code == 204
        r = await admin.http.post("/emails", json=SEND, headers={"Api-Key": ids["key"]})
        assert r.status_code == 401
        assert (await admin("GET", f"/api/email/services/{ids['sid']}/api-keys")).json()["data"] == []


@pytest.mark.kafka
async def test_revocation_reaches_another_process_within_a_second(tmp_path, tansu):
    kafka = {"kafka_bootstrap": tansu.bootstrap, "kafka_idempotence": False, "kafka_session_timeout_ms": 2000}
    async with api_runtime(tmp_path / "one", **kafka) as (rt1, admin1):
        async with api_runtime(tmp_path / "two", **kafka) as (rt2, admin2):
            ids = await setup_service(admin1)
            for _ in range(50):  # the other replica learns about the new key by following the topic
                if (await admin2.http.post("/emails", json=SEND, headers={"Api-Key": ids["key"]})).status_code != 401:
                    break
                await asyncio.sleep(0.1)
            await admin1("DELETE", f"/api/email/services/{ids['sid']}/api-keys/{ids['key_id']}")
            loop = asyncio.get_running_loop()
            start = loop.time()
            while (await admin2.http.post("/emails", json=SEND, headers={"Api-Key": ids["key"]})).status_code != 401:
                assert loop.time() - start < 1.0, "revocation not seen by the other replica within a second"
                await asyncio.sleep(0.02)


async def test_sandbox_link_is_single_use_and_expires(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        await admin("POST", f"/api/email/services/{sid}/sandbox-emails", json={"email": "Bob@Example.com"})
        rec = next(iter(rt.control.state.sandbox.values()))
        assert rec.email == "bob@example.com" and not rec.verified
        # swap in a token we know, expired
        token = "known-token-value-123456"
        await rt.control.save(rec.model_copy(update={
            "id": ev.new_id(), "token_hash": hash_secret(token), "token_expires_at": ev.utcnow() - timedelta(seconds=1)}))
        r = await admin.http.get("/api/email/sandbox-emails/verify", params={"token": token})
        assert r.status_code == 400
        await rt.control.save(rec.model_copy(update={
            "id": ev.new_id(), "token_hash": hash_secret(token), "token_expires_at": ev.utcnow() + timedelta(hours=1)}))
        assert (await admin.http.get("/api/email/sandbox-emails/verify", params={"token": token})).status_code == 200
        assert (await admin.http.get("/api/email/sandbox-emails/verify", params={"token": token})).status_code == 400
        listed = (await admin("GET", f"/api/email/services/{sid}/sandbox-emails")).json()["data"]
        assert listed[0]["verified"] is True


BAD_INPUT = [
    ("POST", "/api/email/services", {"name": ""}, "name"),
    ("POST", "/api/email/services", {"name": 5}, "name"),
    ("POST", "/api/email/services", {}, "name"),
    ("POST", "/api/email/services", {"name": "x", "colour": "red"}, "colour"),
    ("PATCH", "/api/email/services/{sid}", {"mode": "turbo"}, "mode"),
    ("PATCH", "/api/email/services/{sid}", {"status": 1}, "status"),
    ("PATCH", "/api/email/services/{sid}", {"track_opens": "maybe"}, "track_opens"),
    ("POST", "/api/email/services/{sid}/api-keys", {"name": ["x"]}, "name"),
    ("POST", "/api/email/services/{sid}/domains", {"domain": "not a domain"}, "domain"),
    ("POST", "/api/email/services/{sid}/domains", {}, "domain"),
    ("POST", "/api/email/services/{sid}/sandbox-emails", {"email": "nope"}, "email"),
    ("POST", "/api/email/services/{sid}/sandbox-emails", {"email": "a@b.test\r\nBcc: x@y.test"}, "email"),
]


@pytest.mark.parametrize("method,path,body,field", BAD_INPUT)
async def test_bad_input_is_400_naming_the_field(tmp_path, method, path, body, field):
    async with api_runtime(tmp_path) as (rt, admin):
        sid = await admin.service()
        r = await admin(method, path.format(sid=sid), json=body)
        assert r.status_code == 400, r.text
        assert re.match(rf"^{field}\b", r.json()["error"]), r.json()


async def test_malformed_json_is_400(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        r = await admin("POST", "/api/email/services", content=b"{nope", headers={"content-type": "application/json"})
        assert r.status_code == 400 and "JSON" in r.json()["error"]


# ---------------------------------------------------------------- several API processes (read your writes)

async def test_a_change_on_one_process_is_used_at_once_on_another(tmp_path):
    """Two API processes over one embedded log (in this event loop, so the second one's log
    watcher never gets a tick in between): what A answered 201/200 is used by B's next request."""
    async with api_runtime(tmp_path) as (_, a), api_runtime(tmp_path) as (_, b):
        for i in range(5):
            sid = await a.service(f"s{i}")
            key = await b.key(sid)  # 404 without read-your-writes
            r = await a.http.post(f"/api/email/services/{sid}/send", json=SEND, headers={"Api-Key": key})
            assert r.status_code == 200, r.text
            assert (await b("PATCH", f"/api/email/services/{sid}", json={"track_opens": True})).status_code == 200
            got = (await a("GET", f"/api/email/services/{sid}")).json()
            assert got["track_opens"] is True


async def test_concurrent_changes_on_two_processes_keep_every_change_answered_200(tmp_path):
    """Different fields at once: both apply. The same field at once: the later may be refused
    with 409, never answered 200 and dropped."""
    async with api_runtime(tmp_path) as (_, a), api_runtime(tmp_path) as (_, b):
        for i in range(5):
            sid = await a.service(f"s{i}")
            path = f"/api/email/services/{sid}"
            opens, clicks = await asyncio.gather(a("PATCH", path, json={"track_opens": True}),
                                                 b("PATCH", path, json={"track_clicks": True}))
            assert (opens.status_code, clicks.status_code) == (200, 200), (opens.text, clicks.text)
            first, second = await asyncio.gather(a("PATCH", path, json={"name": "first"}),
                                                 b("PATCH", path, json={"name": "second"}))
            assert {first.status_code, second.status_code} <= {200, 409}
            for client in (a, b):
                got = (await client("GET", path)).json()
                assert got["track_opens"] is True and got["track_clicks"] is True, got
                assert got["name"] in {r.json()["name"] for r in (first, second) if r.status_code == 200}, got


# ---------------------------------------------------------------- sandbox confirmation mail (no mail bombing)

async def confirmation_mails(rt, email: str) -> list[ev.SendRequested]:
    """The confirmation mails to ``email`` on the log."""
    consumer = rt.log.consumer([ev.Topic.REQUESTS], group=None)
    await consumer.start()
    try:
        out: list[ev.SendRequested] = []
        while batch := await consumer.poll(max_records=1000, timeout=0.2):
            out += [r for r in (ev.decode(rec.value) for rec in batch)
                    if r.to == [email] and "postline-sandbox-verification" in r.tags]
        return out
    finally:
        await consumer.close()


async def test_an_address_gets_one_confirmation_mail_a_minute_whatever_the_process(tmp_path):
    """Adding a pending address again, on any API process, within ``RESEND_AFTER`` answers the
    address as it is and mails nothing; the link already mailed keeps working. Many first adds
    at once on two processes mail once."""
    async with api_runtime(tmp_path) as (rt, a), api_runtime(tmp_path) as (_, b):
        sid = await a.service()
        path = f"/api/email/services/{sid}/sandbox-emails"
        first = await a("POST", path, json={"email": "ann@example.com"})
        assert first.status_code == 201 and first.json()["verification_email_id"]
        again = await asyncio.gather(*[c("POST", path, json={"email": "ann@example.com"}) for c in (a, b) * 10])
        assert {(r.status_code, r.json().get("id"), r.json().get("verification_email_id")) for r in again} == \
            {(201, first.json()["id"], None)}
        mails = await confirmation_mails(rt, "ann@example.com")
        assert [m.email_id for m in mails] == [first.json()["verification_email_id"]]
        token = re.search(r"token=([\w-]+)", mails[0].text).group(1)
        assert (await b.http.get("/api/email/sandbox-emails/verify", params={"token": token})).status_code == 200
        # a first add of an address, twenty at once over two processes: one mail
        burst = await asyncio.gather(*[c("POST", path, json={"email": "bob@example.com"}) for c in (a, b) * 10])
        assert {r.status_code for r in burst} <= {201, 429}
        assert len(await confirmation_mails(rt, "bob@example.com")) == 1
        assert sum(1 for r in burst if r.status_code == 201 and r.json()["verification_email_id"]) == 1
        usage = (await a("GET", f"/api/email/services/{sid}")).json()["rate_limits"]["usage"]
        assert usage["sandbox_today"] == 0  # confirmations have a cap of their own: the 50 sandbox sends stay whole


async def test_a_service_mails_at_most_fifty_confirmations_a_day(tmp_path):
    """The 51st confirmation mail of a day (two processes adding addresses in turn) is refused:
    429, nothing mailed, nothing added."""
    async with api_runtime(tmp_path) as (rt, a), api_runtime(tmp_path) as (_, b):
        sid = await a.service()
        path = f"/api/email/services/{sid}/sandbox-emails"
        for i in range(50):
            r = await (a, b)[i % 2]("POST", path, json={"email": f"u{i}@example.com"})
            assert r.status_code == 201 and r.json()["verification_email_id"], r.text
        over = await b("POST", path, json={"email": "victim@example.com"})
        assert over.status_code == 429 and over.json()["name"] == "daily_quota_exceeded", over.text
        assert "sandbox confirmations: 50" in over.json()["error"] and int(over.headers["Retry-After"]) > 60
        assert await confirmation_mails(rt, "victim@example.com") == []
        assert "victim@example.com" not in {r["email"] for r in (await a("GET", path)).json()["data"]}
