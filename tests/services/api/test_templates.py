"""Stored templates (services/api/manage/templates.py, template_send.py): the management
paths on both doors, and sends that render the published version — escaping, fallbacks,
missing and wrongly typed variables, overrides, every send door. One API in the test's loop
over the real embedded log; the rendered request is read back from the log."""
from __future__ import annotations

import pytest
import pytest_asyncio

from shared import events as ev
from tests.support.inproc import api_runtime, ready_service

pytestmark = pytest.mark.asyncio(loop_scope="module")  # one API for the module; a service per test

WELCOME = {"name": "welcome", "alias": "welcome-email", "from": "Acme <hello@acme.test>",
           "subject": "Welcome, {{{NAME}}}", "html": "<p>Hi {{{NAME}}}, you have {{{ CREDITS }}} credits</p>",
           "variables": [{"key": "NAME", "type": "string"},
                         {"key": "CREDITS", "type": "number", "fallback_value": 5}]}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(tmp_path_factory):
    async with api_runtime(tmp_path_factory.mktemp("templates")) as (rt, admin):
        yield rt, admin


@pytest_asyncio.fixture(loop_scope="module")
async def world(api):
    """A fresh sandbox service (``ann@example.com`` verified), its sending key and a caller
    with its full-access key."""
    rt, admin = api
    sid, key = await ready_service(rt, admin)
    r = await admin("POST", f"/api/email/services/{sid}/api-keys", json={"name": "full", "permission": "full_access"})
    full = r.json()["key"]

    async def call(method: str, path: str, key_: str = full, **kw):
        return await admin.http.request(method, path, headers={"Authorization": f"Bearer {key_}"}, **kw)
    return rt, admin, sid, key, call


async def published_template(call, body=WELCOME) -> str:
    r = await call("POST", "/templates", json=body)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert (await call("POST", f"/templates/{tid}/publish")).json() == {"id": tid, "object": "template"}
    return tid


async def requested(rt, email_id: str) -> ev.SendRequested:
    """The request the API appended for ``email_id``, as the relay reads it."""
    consumer = rt.log.consumer([ev.Topic.REQUESTS], None)
    await consumer.start()
    try:
        found = [ev.decode(r.value) for r in await consumer.poll(max_records=1000, timeout=0.5)]
    finally:
        await consumer.close()
    return next(e for e in found if getattr(e, "email_id", None) == email_id)


async def test_manage_draft_publish_versions_duplicate_delete(world):
    rt, admin, sid, key, call = world
    r = await call("POST", "/templates", json=WELCOME)
    tid = r.json()["id"]
    got = (await call("GET", "/templates/welcome-email")).json()  # by alias
    assert (got["id"], got["object"], got["status"], got["from"]) == (tid, "template", "draft", "Acme <hello@acme.test>")
    assert [(v["key"], v["type"], v["fallback_value"]) for v in got["variables"]] == [("NAME", "string", None),
                                                                                   ("CREDITS", "number", 5)]
    assert (await call("POST", f"/templates/{tid}/publish")).status_code == 200
    assert (await call("PATCH", f"/templates/{tid}", json={"html": "<p>Hello {{{NAME}}}</p>"})).status_code == 200
    got = (await call("GET", f"/templates/{tid}")).json()
    assert got["html"] == "<p>Hello {{{NAME}}}</p>" and got["status"] == "published" and got["has_unpublished_versions"]
    await call("POST", f"/templates/{tid}/publish")
    got = (await call("GET", f"/templates/{tid}")).json()
    assert [v["number"] for v in got["versions"]] == [2, 1] and not got["has_unpublished_versions"]
    first = got["versions"][1]["id"]
    assert (await call("GET", f"/templates/{tid}/versions/{first}")).json()["html"] == WELCOME["html"]
    # the admin door sees the same template, another service does not
    listed = (await admin("GET", f"/api/email/services/{sid}/templates")).json()
    assert listed["object"] == "list" and [t["id"] for t in listed["data"]] == [tid] and not listed["has_more"]
    other = await admin.service("other")
    assert (await admin("GET", f"/api/email/services/{other}/templates/{tid}")).status_code == 404
    other_key = (await admin("POST", f"/api/email/services/{other}/api-keys",
                             json={"name": "f", "permission": "full_access"})).json()["key"]
    for method, path in (("GET", f"/templates/{tid}"), ("PATCH", f"/templates/{tid}"), ("POST", f"/templates/{tid}/publish"),
                         ("DELETE", "/templates/welcome-email")):
        assert (await call(method, path, key_=other_key, json={})).status_code == 404, (method, path)
    r = await admin.http.post("/emails", headers={"Api-Key": other_key},
                              json={"from": "a@acme.test", "to": "x@example.com", "template": {"id": tid}})
    assert (r.status_code, r.json()["error"]) == (422, f"template.id: template {tid} not found")
    copy = (await call("POST", f"/templates/{tid}/duplicate")).json()["id"]
    dup = (await call("GET", f"/templates/{copy}")).json()
    assert dup["status"] == "draft" and dup["alias"] is None and dup["html"] == "<p>Hello {{{NAME}}}</p>"
    assert [t["id"] for t in (await call("GET", "/templates?limit=1")).json()["data"]] == [copy]
    assert (await call("DELETE", f"/templates/{tid}")).json() == {"object": "template", "id": tid, "deleted": True}
    assert (await call("GET", f"/templates/{tid}")).status_code == 404
    assert not rt.control.state.versions_of_template(tid)


async def test_refusals_of_the_management_paths(world):
    rt, admin, sid, key, call = world
    r = await call("GET", "/templates", key_=key)  # a sending key
    assert r.status_code == 403 and r.json()["name"] == "restricted_api_key"
    r = await call("POST", "/templates", json={**WELCOME, "variables": [{"key": "1X", "type": "string"}]})
    assert r.status_code == 400 and r.json()["error"].startswith("variables[0].key")
    r = await call("POST", "/templates", json={**WELCOME, "variables": [{"key": "N", "type": "number",
                                                                            "fallback_value": "five"}]})
    assert r.status_code == 400 and "fallback_value" in r.json()["error"]
    r = await call("POST", "/templates", json={**WELCOME, "variables": [{"key": f"V{i}", "type": "string"} for i in range(21)]})
    assert r.status_code == 400 and r.json()["error"].startswith("variables")
    r = await call("POST", "/templates", json={**WELCOME, "html": "x" * (256 * 1024 + 1)})
    assert r.status_code == 400 and "over the limit" in r.json()["error"]
    await call("POST", "/templates", json=WELCOME)
    r = await call("POST", "/templates", json=WELCOME)  # the alias is taken
    assert r.status_code == 409 and r.json()["error"].startswith("alias")
    r = await call("POST", "/templates", json={"name": "t", "html": "<p>{{{WHO}}}</p>"})
    r = await call("POST", f"/templates/{r.json()['id']}/publish")
    assert r.status_code == 422 and r.json()["error"] == "html: {{{WHO}}} is used but not declared in variables"


async def test_send_renders_the_published_version(world):
    rt, admin, sid, key, call = world
    tid = await published_template(call)
    await call("PATCH", f"/templates/{tid}", json={"html": "<p>an unpublished draft</p>"})
    r = await admin.http.post("/emails", headers={"Api-Key": key}, json={
        "to": "ann@example.com", "template": {"id": "welcome-email", "variables": {"NAME": "<b>Ann & co</b>"}}})
    assert r.status_code == 200, r.text
    req = await requested(rt, r.json()["id"])
    assert req.template_id == tid and req.subject == "Welcome, <b>Ann & co</b>"  # the subject is not HTML
    assert req.html == "<p>Hi &lt;b&gt;Ann &amp; co&lt;/b&gt;, you have 5 credits</p>"  # escaped; the fallback
    assert req.text is None  # derived by the relay, as for any HTML-only send
    assert req.reply_to == ["Acme <hello@acme.test>"]  # the template's From, kept as Reply-To by the sandbox


async def test_send_fields_override_the_template_and_every_door_renders(world):
    rt, admin, sid, key, call = world
    await published_template(call)
    body = {"from": "Other <other@acme.test>", "to": "ann@example.com", "subject": "Mine", "reply_to": "r@acme.test",
            "template": {"id": "welcome-email", "variables": {"NAME": "Ann", "CREDITS": 7.0}}}
    ids = [(await admin.http.post("/emails", headers={"Api-Key": key}, json=body)).json()["id"],
           (await admin.http.post(f"/api/email/services/{sid}/send", headers={"Authorization": f"Bearer {key}"},
                                  json=body)).json()["id"],
           (await admin.http.post("/emails/batch", headers={"Api-Key": key}, json=[body])).json()["data"][0]["id"]]
    for email_id in ids:
        req = await requested(rt, email_id)
        assert (req.subject, req.reply_to) == ("Mine", ["r@acme.test"])
        assert req.html == "<p>Hi Ann, you have 7 credits</p>"


@pytest.mark.parametrize("template, error", [
    ({"id": "welcome-email", "variables": {}}, "template.variables.NAME: required: the template gives it no fallback_value"),
    ({"id": "welcome-email", "variables": {"NAME": 3}}, "template.variables.NAME: must be a string, got int"),
    ({"id": "welcome-email", "variables": {"NAME": "a", "CREDITS": "many"}},
     "template.variables.CREDITS: must be a number, got str"),
    ({"id": "welcome-email", "variables": {"NAME": "a", "NAM": "b"}},
     "template.variables.NAM: not a variable of this template (it declares: CREDITS, NAME)"),
    ({"id": "welcome-email", "variables": {"NAME": "a\r\nBcc: x@evil.test"}},
     "template: the rendered subject: must not contain line breaks or NUL"),
    ({"id": "nope"}, "template.id: template nope not found"),
])
async def test_a_send_the_template_cannot_render_is_a_422(world, template, error):
    rt, admin, sid, key, call = world
    await published_template(call)
    r = await admin.http.post("/emails", headers={"Api-Key": key}, json={"to": "ann@example.com", "template": template})
    assert (r.status_code, r.json()["error"], r.json()["name"]) == (422, error, "validation_error")


async def test_unpublished_templates_and_html_beside_a_template_are_refused(world):
    rt, admin, sid, key, call = world
    r = await call("POST", "/templates", json={**WELCOME, "alias": None})
    send = {"to": "ann@example.com", "template": {"id": r.json()["id"], "variables": {"NAME": "a"}}}
    r = await admin.http.post("/emails", headers={"Api-Key": key}, json=send)
    assert r.status_code == 422 and "is not published" in r.json()["error"]
    await published_template(call)
    r = await admin.http.post("/emails", headers={"Api-Key": key},
                              json={**send, "html": "<p>x</p>", "template": {"id": "welcome-email", "variables": {"NAME": "a"}}})
    assert (r.status_code, r.json()["error"]) == (422, "html: give either a template or html/text, not both")
    r = await admin.http.post("/emails", headers={"Api-Key": key}, json={"to": "ann@example.com", "subject": "s", "text": "t"})
    assert (r.status_code, r.json()["error"]) == (400, "from: field required")  # without a template, from is required
