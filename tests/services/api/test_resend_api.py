"""Key scopes and the rest of Resend's API at the HTTP level, in-process (the SDKs drive the
same paths against a real process in tests/sdk): ``permission`` and ``domain_id`` in the
admin API and the dashboard, a domain-limited key on every HTTP send door, strict and
permissive batches, paging, the 404 for what Postline does not offer, resend-php's errors."""
from __future__ import annotations

import httpx

from services.api.app import create_app
from shared import events as ev
from tests.services.api.dashboard.support import sign_in
from tests.services.api.test_accept import sends_total
from tests.support.inproc import api_runtime, ready_service
from tests.support.postline import ADMIN_TOKEN

SEND = {"from": "Acme <hello@acme.test>", "to": ["ann@example.com"], "subject": "s", "text": "t"}
PHP = {"User-Agent": "resend-php/1.10.0"}


async def limited_key(admin, sid: str) -> tuple[str, str]:
    """``(domain id, key)``: a sending key limited to acme.test (added, not verified)."""
    did = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()["id"]
    r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "acme", "domain_id": did})
    assert r.status_code == 201, r.text
    assert (r.json()["permission"], r.json()["domain_id"]) == ("sending_access", did)
    return did, r.json()["key"]


async def test_key_scopes_are_checked_in_the_admin_api(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, _ = await ready_service(rt, admin)
        did, _ = await limited_key(admin, sid)
        keys = f"/api/email/services/{sid}/api-keys"
        r = await admin("POST", keys, json={"name": "x", "permission": "full_access", "domain_id": did})
        assert r.status_code == 400 and r.json()["error"].startswith("domain_id: only a sending_access key"), r.text
        r = await admin("POST", keys, json={"name": "x", "domain_id": "nope"})
        assert r.status_code == 404 and r.json()["error"].startswith("domain_id: domain nope not found"), r.text
        other = await admin.service("other")
        r = await admin("POST", f"/api/email/services/{other}/api-keys", json={"name": "x", "domain_id": did})
        assert r.status_code == 404, r.text  # another service's domain is no domain of this one
        r = await admin("POST", keys, json={"name": "x", "permission": "admin"})
        assert r.status_code == 400 and r.json()["error"].startswith("permission"), r.text
        listed = {k["name"]: k for k in (await admin("GET", keys)).json()["data"]}
        assert (listed["acme"]["permission"], listed["acme"]["domain_id"]) == ("sending_access", did)
        assert listed["k"]["permission"] == "sending_access" and listed["k"]["domain_id"] is None


async def test_a_domain_limited_key_sends_only_from_its_domain_on_every_door(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, _ = await ready_service(rt, admin)
        _, key = await limited_key(admin, sid)
        other = {**SEND, "from": "hello@other.test"}
        doors = [("/emails", {"Api-Key": key}, "application/json"),  # the fast path takes a plain JSON send
                 ("/emails", {"Api-Key": key}, "application/json; charset=utf-8"),  # this one goes to the route
                 (f"/api/email/services/{sid}/send", {"Authorization": f"Bearer {key}"}, "application/json")]
        for path, auth, content_type in doors:
            headers = {**auth, "Content-Type": content_type}
            r = await admin.http.post(path, json=other, headers=headers)
            assert r.status_code == 403, (path, content_type, r.text)
            assert r.json()["name"] == "validation_error"
            assert r.json()["error"] == "from: this API key may only send from acme.test (got 'hello@other.test')"
            assert (await admin.http.post(path, json=SEND, headers=headers)).status_code == 200, path
        r = await admin.http.post("/emails/batch", json=[SEND, other], headers={"Api-Key": key})
        assert r.status_code == 422 and r.json()["error"].startswith("[1].from: this API key may only send"), r.text


async def test_strict_batches_send_nothing_and_permissive_ones_send_the_valid_items(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        unverified = {**SEND, "to": ["bob@example.com"]}
        before = (await sends_total(admin)).get("accepted", 0)
        for header in ({}, {"x-batch-validation": "strict"}, {"x-batch-validation": "STRICT"}):
            r = await admin.http.post("/emails/batch", json=[SEND, {**SEND, "to": "nobody"}],
                                      headers={"Api-Key": key, **header})
            assert r.status_code == 422 and r.json()["error"].startswith("[1].to: "), r.text
            r = await admin.http.post("/emails/batch", json=[SEND, SEND, unverified], headers={"Api-Key": key, **header})
            assert r.status_code == 422 and r.json()["error"].startswith("[2].to: bob@example.com is not a verified"), r.text
        r = await admin.http.post("/emails/batch", json=[SEND], headers={"Api-Key": key, "x-batch-validation": "lenient"})
        assert r.status_code == 400 and r.json()["error"].startswith("x-batch-validation: must be strict or permissive")
        assert (await sends_total(admin)).get("accepted", 0) == before  # nothing was sent
        r = await admin.http.post("/emails/batch", json=[SEND], headers={"Api-Key": key})
        assert r.status_code == 200 and "errors" not in r.json() and len(r.json()["data"]) == 1, r.text
        r = await admin.http.post("/emails/batch", json=[unverified, SEND, {**SEND, "subject": None}],
                                  headers={"Api-Key": key, "x-batch-validation": "permissive"})
        assert r.status_code == 200, r.text
        assert [d["status"] for d in r.json()["data"]] == ["sent"]
        assert [(e["index"], e["message"][:7]) for e in r.json()["errors"]] == [(0, "[0].to:"), (2, "[2].sub")]
        assert (await sends_total(admin)).get("accepted", 0) == before + 2


async def test_a_keyed_batch_is_answered_once_and_one_that_sent_nothing_keeps_its_key(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        keyed = {"Api-Key": key, "Idempotency-Key": "weekly-1", "x-batch-validation": "permissive"}
        before = (await sends_total(admin)).get("accepted", 0)
        first = await admin.http.post("/emails/batch", json=[SEND, {**SEND, "to": "nobody"}], headers=keyed)
        again = await admin.http.post("/emails/batch", json=[SEND, {**SEND, "to": "nobody"}], headers=keyed)
        assert first.status_code == again.status_code == 200 and first.json() == again.json(), (first.text, again.text)
        assert (await sends_total(admin)).get("accepted", 0) == before + 1
        strict = await admin.http.post("/emails/batch", json=[SEND, {**SEND, "to": "nobody"}],
                                       headers={**keyed, "x-batch-validation": "strict"})
        assert strict.status_code == 409  # the key, with another request (the mode is part of it)
        keyed["Idempotency-Key"] = "weekly-2"
        refused = await admin.http.post("/emails/batch", json=[{**SEND, "to": "nobody"}], headers=keyed)
        assert refused.status_code == 200 and refused.json()["data"] == [] and len(refused.json()["errors"]) == 1
        fixed = await admin.http.post("/emails/batch", json=[SEND], headers=keyed)  # nothing was sent: the key is free
        assert fixed.status_code == 200 and len(fixed.json()["data"]) == 1, fixed.text
        assert (await sends_total(admin)).get("accepted", 0) == before + 2


async def requests_on_log(rt) -> int:
    """Send requests appended so far (every accepted send is one)."""
    return sum((await rt.event_log().end_offsets(ev.Topic.REQUESTS)).values())


async def minute_usage(admin, sid: str) -> int:
    return (await admin("GET", f"/api/email/services/{sid}")).json()["rate_limits"]["usage"]["this_minute"]


async def room_for(admin, sid: str, n: int) -> int:
    """Set the service's per-minute limit to leave room for ``n`` more sends (whatever setting
    it up sent, e.g. a sandbox confirmation mail); the limit."""
    limit = await minute_usage(admin, sid) + n
    r = await admin("PATCH", f"/api/email/services/{sid}", json={"rate_limits": {"per_minute": limit}})
    assert r.status_code == 200, r.text
    return limit


def assert_like_a_single_send_over_the_limit(r, limit: int, remaining: int, single=None) -> None:
    """The 429 a single send over the per-minute limit gets (``single``, when given, is one):
    the body, its ``name``, ``Retry-After`` and ``RateLimit-*``."""
    assert r.status_code == 429, r.text
    assert r.json()["name"] == "rate_limit_exceeded" and r.json()["statusCode"] == 429
    assert r.json()["error"].startswith(f"rate limit reached (minute: {limit}); retry in "), r.text
    assert "data" not in r.json() and "errors" not in r.json()
    if single is not None:
        assert single.status_code == 429 and single.json()["name"] == r.json()["name"], single.text
        assert set(single.json()) == set(r.json()) and single.json()["error"].split(";")[0] == r.json()["error"].split(";")[0]
    assert 1 <= int(r.headers["Retry-After"]) <= 61
    assert (r.headers["RateLimit-Limit"], r.headers["RateLimit-Remaining"]) == (str(limit), str(remaining))
    assert int(r.headers["RateLimit-Reset"]) >= 1


async def test_a_strict_batch_over_the_rate_limit_is_a_429_and_sends_nothing(tmp_path):
    """Strict is all or nothing for the rate limit too (docs/rate-limits.md): a batch the limit
    has room for only part of sends none of it and answers the 429 a single send gets."""
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        limit = await room_for(admin, sid, 1)
        before = (await requests_on_log(rt), await minute_usage(admin, sid), await sends_total(admin))
        for header in ({}, {"x-batch-validation": "strict"}):  # room for 1 of 2
            r = await admin.http.post("/emails/batch", json=[SEND, SEND], headers={"Api-Key": key, **header})
            assert_like_a_single_send_over_the_limit(r, limit, remaining=1)  # nothing of it counted: 1 left
        assert await requests_on_log(rt) == before[0] and await minute_usage(admin, sid) == before[1]
        assert (await sends_total(admin)).get("accepted", 0) == before[2].get("accepted", 0)
        assert (await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200  # the room left
        single = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})
        r = await admin.http.post("/emails/batch", json=[SEND], headers={"Api-Key": key})  # no room at all
        assert_like_a_single_send_over_the_limit(r, limit, remaining=0, single=single)
        assert await requests_on_log(rt) == before[0] + 1 and await minute_usage(admin, sid) == before[1] + 1


async def test_a_permissive_batch_sends_what_fits_and_is_a_429_when_nothing_does(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        permissive = {"Api-Key": key, "x-batch-validation": "permissive"}
        limit = await room_for(admin, sid, 1)
        r = await admin.http.post("/emails/batch", json=[SEND, SEND], headers=permissive)  # room for 1 of 2
        assert r.status_code == 200, r.text
        assert [d["status"] for d in r.json()["data"]] == ["sent"]
        assert [(e["index"], e["message"].split(";")[0]) for e in r.json()["errors"]] == [
            (1, f"[1] rate limit reached (minute: {limit})")]
        assert await minute_usage(admin, sid) == limit
        requests = await requests_on_log(rt)
        single = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})
        r = await admin.http.post("/emails/batch", json=[SEND, SEND], headers=permissive)  # no room
        assert_like_a_single_send_over_the_limit(r, limit, remaining=0, single=single)
        assert await requests_on_log(rt) == requests and await minute_usage(admin, sid) == limit
        keyed = {**permissive, "Idempotency-Key": "over-1"}  # refused by the limit: the key is not used up
        assert (await admin.http.post("/emails/batch", json=[SEND], headers=keyed)).status_code == 429
        await room_for(admin, sid, 1)
        r = await admin.http.post("/emails/batch", json=[SEND], headers=keyed)
        assert r.status_code == 200 and len(r.json()["data"]) == 1 and r.json()["errors"] == [], r.text


async def test_a_keyed_strict_batch_over_the_rate_limit_keeps_its_key(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        keyed = {"Api-Key": key, "Idempotency-Key": "strict-over-1"}
        limit = await room_for(admin, sid, 1)
        requests, usage = await requests_on_log(rt), await minute_usage(admin, sid)
        r = await admin.http.post("/emails/batch", json=[SEND, SEND], headers=keyed)  # room for 1 of 2
        assert_like_a_single_send_over_the_limit(r, limit, remaining=1)
        assert await requests_on_log(rt) == requests and await minute_usage(admin, sid) == usage
        await room_for(admin, sid, 2)
        r = await admin.http.post("/emails/batch", json=[SEND, SEND], headers=keyed)
        assert r.status_code == 200 and len(r.json()["data"]) == 2, r.text
        assert await requests_on_log(rt) == requests + 2 and await minute_usage(admin, sid) == usage + 2


async def test_management_paths_page_and_refuse_sending_keys(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, sending = await ready_service(rt, admin)
        r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "full", "permission": "full_access"})
        full = {"Authorization": f"Bearer {r.json()['key']}"}
        for i in range(3):
            await admin.http.post("/suppressions", json={"email": f"s{i}@example.com"}, headers=full)
        first = (await admin.http.get("/suppressions?limit=2", headers=full)).json()
        assert first["object"] == "list" and first["has_more"] is True
        assert [s["email"] for s in first["data"]] == ["s2@example.com", "s1@example.com"]
        rest = (await admin.http.get(f"/suppressions?limit=2&after={first['data'][-1]['id']}", headers=full)).json()
        assert ([s["email"] for s in rest["data"]], rest["has_more"]) == (["s0@example.com"], False)
        back = (await admin.http.get(f"/suppressions?limit=1&before={rest['data'][0]['id']}", headers=full)).json()
        assert ([s["email"] for s in back["data"]], back["has_more"]) == (["s1@example.com"], True)
        r = await admin.http.get("/suppressions?after=a&before=b", headers=full)
        assert r.status_code == 400 and r.json()["error"].startswith("before: give after or before"), r.text
        r = await admin.http.get("/suppressions?after=nope", headers=full)
        assert r.status_code == 400 and r.json()["error"].startswith("after: no item"), r.text
        for method, path in (("GET", "/api-keys"), ("POST", "/api-keys"), ("DELETE", "/api-keys/x"), ("GET", "/domains"),
                             ("POST", "/domains/x/verify"), ("GET", "/suppressions/s0@example.com"),
                             ("GET", "/webhooks"), ("GET", "/webhooks/x/events"), ("GET", "/emails")):
            r = await admin.http.request(method, path, headers={"Api-Key": sending})
            assert (r.status_code, r.json()["name"]) == (403, "restricted_api_key"), (method, path, r.text)


async def test_paths_postline_does_not_offer_say_so_and_its_own_keep_their_answers(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        _, key = await ready_service(rt, admin)
        for method, path in (("GET", "/contacts"), ("POST", "/audiences"), ("GET", "/broadcasts/b1"),
                             ("POST", "/domains/claim"), ("GET", "/domains/d1/claim"), ("POST", "/suppressions/batch/add"),
                             ("GET", "/emails/e1/attachments"), ("GET", "/emails/metrics")):
            r = await admin.http.request(method, path, headers={"Api-Key": key})
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["name"] == "not_found" and r.json()["error"].startswith("Postline does not offer Resend's")
        r = await admin.http.put("/emails/e1")
        assert r.status_code == 405 and "GET" in r.headers["Allow"]
        r = await admin.http.get("/no/such/path")
        assert (r.status_code, r.json()["error"]) == (404, "Not Found")


async def test_resend_php_gets_an_error_object_it_can_read(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        cases = [("GET", "/emails/e1", {}, None),  # 401 missing key
                 ("POST", "/emails", {"Api-Key": key}, {**SEND, "to": "nobody"}),  # 400 (the fast path hands resend-php on)
                 ("GET", "/contacts", {}, None),  # 404 not offered
                 ("POST", "/emails", {"Api-Key": key, "Content-Length": "99999999999"}, None)]  # 413
        for method, path, headers, body in cases:
            plain = await admin.http.request(method, path, headers=headers, json=body)
            php = await admin.http.request(method, path, headers={**headers, **PHP}, json=body)
            assert php.status_code == plain.status_code >= 400, (path, php.text)
            assert isinstance(plain.json()["error"], str)
            assert "application/json" in php.headers["content-type"]  # resend-php reads JSON errors only
            error = php.json()["error"]  # what its HttpTransporter hands to ErrorException
            assert error["message"] == plain.json()["error"]
            assert isinstance(error.get("type") or error["name"], str) and error["name"] == plain.json()["name"]
            assert isinstance(error.get("code") or error["statusCode"], int) and error["code"] == php.status_code
        ok = await admin.http.post("/emails", json=SEND, headers={"Api-Key": key, **PHP})
        assert ok.status_code == 200 and ok.json()["status"] == "sent"  # answers other than errors are untouched

        def broken(service_id):
            raise RuntimeError("a bug")

        rt.control.state.domains_of = broken  # an unhandled fault: Starlette's outermost handler answers
        full = (await admin("POST", f"/api/email/services/{sid}/api-keys",
                            json={"name": "f", "permission": "full_access"})).json()["key"]
        fault = await admin.http.get("/domains", headers={"Authorization": f"Bearer {full}", **PHP})
        assert fault.status_code == 500 and fault.json()["error"]["code"] == 500
        assert fault.json()["error"]["type"] == "application_error" and fault.json()["request_id"]


async def test_the_dashboard_creates_full_access_and_domain_limited_keys(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        transport = httpx.ASGITransport(app=create_app(rt), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            csrf = await sign_in(http, ADMIN_TOKEN)
            sid = await admin.service("keys")
            did = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()["id"]
            page = (await http.get(f"/services/{sid}/keys")).text
            assert 'name="permission"' in page and f'<option value="{did}">acme.test only</option>' in page
            r = await http.post(f"/services/{sid}/keys", data={"csrf": csrf, "name": "bad", "permission": "full_access",
                                                               "domain_id": did})
            assert r.status_code == 400 and "only a sending_access key can be limited to a domain" in r.text
            r = await http.post(f"/services/{sid}/keys", data={"csrf": csrf, "name": "acme", "domain_id": did})
            assert r.status_code == 201 and "sending from acme.test" in r.text
            r = await http.post(f"/services/{sid}/keys", data={"csrf": csrf, "name": "ops", "permission": "full_access"})
            assert r.status_code == 201 and "full access" in r.text
            scopes = {k.name: (k.permission, k.domain_id) for k in rt.control.state.keys_of(sid)}
            assert scopes == {"acme": ("sending_access", did), "ops": ("full_access", None)}


async def test_a_full_access_key_reaches_only_its_own_service(tmp_path):
    async with api_runtime(tmp_path, webhook_allow_private=True) as (rt, admin):
        keys = {}
        for name in ("a", "b"):
            sid = await admin.service(name)
            r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": name, "permission": "full_access"})
            keys[name] = ({"Authorization": f"Bearer {r.json()['key']}"}, r.json()["id"])
        b_auth, b_key = keys["b"]
        b_domain = (await admin.http.post("/domains", json={"name": "b.test"}, headers=b_auth)).json()["id"]
        b_hook = (await admin.http.post("/webhooks", json={"endpoint": "http://127.0.0.1:9/hook", "events": ["email.sent"]},
                                        headers=b_auth)).json()["id"]
        b_gone = (await admin.http.post("/suppressions", json={"email": "b@example.com"}, headers=b_auth)).json()["id"]
        a_auth = keys["a"][0]
        for method, path in (("GET", f"/domains/{b_domain}"), ("PATCH", f"/domains/{b_domain}"),
                             ("POST", f"/domains/{b_domain}/verify"), ("DELETE", f"/domains/{b_domain}"),
                             ("PATCH", f"/api-keys/{b_key}"), ("DELETE", f"/api-keys/{b_key}"),
                             ("GET", f"/webhooks/{b_hook}"), ("PATCH", f"/webhooks/{b_hook}"),
                             ("GET", f"/webhooks/{b_hook}/events"), ("POST", f"/webhooks/{b_hook}/signing-secret/rotate"),
                             ("DELETE", f"/webhooks/{b_hook}"), ("GET", f"/suppressions/{b_gone}"),
                             ("DELETE", f"/suppressions/{b_gone}"), ("GET", "/suppressions/b@example.com")):
            body = {"name": "x"} if method == "PATCH" else None
            r = await admin.http.request(method, path, headers=a_auth, json=body)
            assert r.status_code == 404, (method, path, r.text)
        for listing in ("/domains", "/webhooks", "/suppressions"):
            assert (await admin.http.get(listing, headers=a_auth)).json()["data"] == [], listing
        assert b_key not in [k["id"] for k in (await admin.http.get("/api-keys", headers=a_auth)).json()["data"]]
