"""The audit log (shared/audit.py, GET /api/email/audit-log): every control change made by an
admin token or an API key, with before → after and no secret, on the control log."""
from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest

from services.api.access import Actor
from services.api.app import create_app
from services.api.context import ApiContext
from services.api.manage import user_tokens
from shared import events as ev
from tests.services.api.dashboard.support import sign_in
from tests.support.inproc import AdminClient, api_runtime
from tests.support.postline import ADMIN_TOKEN


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One installation: (runtime, admin client, event loop, what the changes returned)."""
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    rt, admin = loop.run_until_complete(stack.enter_async_context(
        api_runtime(tmp_path_factory.mktemp("audit"), webhook_allow_private=True)))

    async def changes():
        sid = await admin.service("billing")
        assert (await admin("PATCH", f"/api/email/services/{sid}", json={"name": "invoices"})).status_code == 200
        key = (await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "laptop"})).json()
        hook = (await admin("POST", f"/api/email/services/{sid}/webhooks",
                            json={"url": "http://127.0.0.1:9/hook", "events": ["delivered"]})).json()
        r = await admin("PATCH", f"/api/email/services/{sid}/webhooks/{hook['id']}", json={"events": ["bounced"]})
        assert r.status_code == 200, r.text
        return {"sid": sid, "key": key, "hook": hook}

    made = loop.run_until_complete(changes())
    yield rt, admin, loop, made
    loop.run_until_complete(stack.aclose())
    loop.close()


def entries(world, **params) -> dict:
    rt, admin, loop, _ = world
    r = loop.run_until_complete(admin("GET", "/api/email/audit-log", params=params))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_rename_is_recorded_with_before_and_after_actor_source_and_request_id(world):
    sid = world[3]["sid"]
    data = entries(world, target=f"service:{sid}")["data"]
    assert [e["action"] for e in data] == ["service.updated", "service.created"]  # newest first
    rename = data[0]
    assert rename["before"] == {"name": "billing"} and rename["after"] == {"name": "invoices"}
    assert rename["target"] == {"type": "service", "id": sid}
    assert rename["actor"]["type"] == "admin_token" and len(rename["actor"]["id"]) == 12
    assert rename["actor"]["id"] not in ADMIN_TOKEN  # a hash's prefix, not a piece of the token
    assert rename["source"] == "127.0.0.1" and rename["request_id"] and rename["time"]


def test_a_key_creation_is_recorded_without_its_secret(world):
    rt, _, _, made = world
    key = made["key"]
    [entry] = entries(world, target=key["id"])["data"]
    assert entry["action"] == "api_key.created" and entry["after"]["name"] == "laptop"
    assert entry["after"]["key_hash"] == "[redacted]" and entry["after"]["prefix"] == key["prefix"]
    raw = json.dumps(entry)
    assert key["key"] not in raw and key["key"][11:] not in raw


def test_a_webhook_change_is_recorded_and_its_secret_never_shown(world):
    hook = world[3]["hook"]
    data = entries(world, target=hook["id"])["data"]
    assert [e["action"] for e in data] == ["webhook.updated", "webhook.created"]
    assert data[0]["before"] == {"events": ["delivered"]} and data[0]["after"] == {"events": ["bounced"]}
    assert data[1]["after"]["secret_sealed"] == "[redacted]"
    assert hook["secret"] not in json.dumps(data)


def test_entries_are_on_the_control_log_under_keys_of_their_own(world):
    """On the log (so they cannot be edited and a replay finds them): one key per entry, which
    compaction (latest record per key) never removes."""
    rt, _, loop, made = world
    seen = []

    async def read():
        consumer = rt.event_log().consumer([ev.Topic.CONTROL], group=None)
        await consumer.start()
        while not await consumer.caught_up():
            seen.extend(await consumer.poll(max_records=1000, timeout=0.2))
        await consumer.close()

    loop.run_until_complete(read())
    audit = [(r.key, ev.decode(r.value)) for r in seen if r.key and r.key.startswith("audit:")]
    assert len(audit) >= 5 and len({key for key, _ in audit}) == len(audit)
    assert all(isinstance(e, ev.AuditEntry) and key == f"audit:{e.id}" for key, e in audit)
    assert not any(made["key"]["key"].encode() in r.value or made["hook"]["secret"].encode() in r.value for r in seen
                   if r.key and r.key.startswith("audit:"))


def test_filters_and_cursor_pages(world):
    everything = entries(world, limit=200)["data"]
    assert len(everything) >= 5
    first = entries(world, limit=2)
    assert first["has_more"] and len(first["data"]) == 2 and first["next_cursor"] == first["data"][1]["id"]
    second = entries(world, limit=2, after=first["next_cursor"])
    assert [e["id"] for e in first["data"] + second["data"]] == [e["id"] for e in everything[:4]]
    assert {e["actor"]["type"] for e in entries(world, actor="admin_token")["data"]} == {"admin_token"}
    assert entries(world, actor="api_key")["data"] == []
    newest = everything[0]["time"]
    assert [e["id"] for e in entries(world, since=newest)["data"]] == [everything[0]["id"]]
    assert everything[0]["id"] not in [e["id"] for e in entries(world, until=newest)["data"]]
    assert {e["target"]["type"] for e in entries(world, target="webhook")["data"]} == {"webhook"}


def test_bad_queries_are_400_naming_the_field_and_the_log_needs_the_admin_token(world):
    rt, admin, loop, made = world

    async def run():
        r = await admin("GET", "/api/email/audit-log", params={"after": "nope"})
        assert r.status_code == 400 and r.json()["error"].startswith("after: ")
        r = await admin("GET", "/api/email/audit-log", params={"since": "yesterday"})
        assert r.status_code == 400 and "since" in r.json()["error"]
        r = await admin("GET", "/api/email/audit-log", params={"limit": 0})
        assert r.status_code == 400 and "limit" in r.json()["error"]
        assert (await admin.as_token("pl_adm_" + "n" * 40)("GET", "/api/email/audit-log")).status_code == 401
        key = {"Authorization": f"Bearer {made['key']['key']}"}
        assert (await admin.http.get("/api/email/audit-log", headers=key)).status_code == 401

    loop.run_until_complete(run())


def test_another_workspace_sees_none_of_it(world):
    rt, admin, loop, _ = world

    async def run():
        _, token = await rt.create_workspace("other")
        other = AdminClient(admin.http, token)
        mine = (await other("GET", "/api/email/audit-log")).json()["data"]
        sid = await other.service("theirs")
        return mine, sid, (await other("GET", "/api/email/audit-log")).json()["data"]

    before, sid, after = loop.run_until_complete(run())
    assert before == [] and [e["target"]["id"] for e in after] == [sid]
    assert sid not in [e["target"]["id"] for e in entries(world, limit=200)["data"]]


def test_a_role_change_and_a_users_own_change_name_their_actor(world):
    """People (docs/people-and-access.md) are audited like the rest: an invitation and a role
    change by the admin token in the dashboard, then a change made with the user's own
    personal token, named by the user's id. Sessions are not entries."""
    rt, admin, loop, made = world

    async def run():
        transport = httpx.ASGITransport(app=create_app(rt), client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8080") as http:
            csrf = await sign_in(http, ADMIN_TOKEN)
            r = await http.post("/people", data={"csrf": csrf, "email": "dev@acme.test", "role": "developer"})
            assert r.status_code == 201, r.text
            user = next(u for u in rt.control.state.users.values() if u.email == "dev@acme.test")
            r = await http.post(f"/people/{user.user_id}/role", data={"csrf": csrf, "role": "viewer"})
            assert r.status_code == 303, r.text
        # the user, active with a developer's role, renames a service with a personal token
        sid = await admin.service("dev-owned")
        user = await rt.control.change(rt.control.state.users[user.user_id], status="active", role="developer")
        token = await user_tokens.create_token(ApiContext.of(rt), Actor(user.workspace_id, "developer", user=user), "ci")
        r = await admin.as_token(token["token"])("PATCH", f"/api/email/services/{sid}", json={"name": "by-dev"})
        assert r.status_code == 200, r.text
        return user

    user = loop.run_until_complete(run())
    created, changed = reversed(entries(world, target=user.user_id)["data"])
    assert created["action"] == "user.created" and created["after"]["role"] == "developer"
    assert created["after"]["invite_token_hash"] == "[redacted]" and created["actor"]["type"] == "admin_token"
    assert changed["action"] == "user.updated" and (changed["before"], changed["after"]) == ({"role": "developer"},
                                                                                           {"role": "viewer"})
    [by_user] = entries(world, actor=user.user_id)["data"]
    assert by_user["actor"] == {"type": "user", "id": user.user_id} and by_user["after"] == {"name": "by-dev"}
    everything = entries(world, limit=200)["data"]
    assert not any(e["target"]["type"] == "session" for e in everything)


def test_a_full_access_key_managing_its_service_is_the_actor_by_key_id(world):
    """Resend's management paths (a full_access key): the entry names the key by its id, and
    the new domain's DKIM private keys are redacted."""
    rt, admin, loop, made = world

    async def run():
        key = (await admin("POST", f"/api/email/services/{made['sid']}/api-keys",
                           json={"name": "manager", "permission": "full_access"})).json()
        r = await admin.http.post("/domains", json={"name": "audited.test"}, headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code in (200, 201), r.text
        return key

    key = loop.run_until_complete(run())
    [entry] = entries(world, actor=key["id"])["data"]
    assert entry["actor"] == {"type": "api_key", "id": key["id"]} and entry["action"] == "domain.created"
    assert entry["after"]["domain"] == "audited.test"
    assert entry["after"]["rsa_private_sealed"] == entry["after"]["ed_private_sealed"] == "[redacted]"
    assert key["key"] not in json.dumps(entry)
