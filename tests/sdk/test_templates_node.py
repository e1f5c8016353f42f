"""Stored templates through Resend's Node SDK (npm ``resend``, tests/sdk/node), unchanged but
for ``RESEND_BASE_URL``: create-and-publish (the SDK's chain), read, edit, send by id with
variables (camelCase options become Resend's fields), duplicate, remove."""
from __future__ import annotations

import pytest

from tests.support.node_sdk import node_caller

FROM = "Acme <hello@acme.test>"


@pytest.fixture
def node(sdk_world):
    return node_caller(sdk_world.url, "templates.mjs", sdk_world.full_key)


def test_create_publish_send_and_manage(node, sdk_world):
    r = node("createAndPublish", template={
        "name": "reset (node)", "from": FROM, "subject": "Reset your password, {{{NAME}}}",
        "replyTo": "help@acme.test", "html": "<p>Use code {{{CODE}}}</p>", "text": "Code: {{{CODE}}}",
        "variables": [{"key": "NAME", "type": "string", "fallbackValue": "there"}, {"key": "CODE", "type": "number"}]})
    assert r["error"] is None, r
    tid = r["data"]["id"]
    got = node("get", id=tid)["data"]
    assert (got["status"], got["reply_to"], got["variables"][0]["fallback_value"]) == ("published", ["help@acme.test"], "there")
    assert node("update", id=tid, changes={"subject": "edited draft"})["error"] is None  # not published: not sent
    sent = node("send", key=sdk_world.key, email={"to": "bob@example.com", "template": {"id": tid, "variables": {"CODE": 123456}}})
    assert sent["error"] is None, sent
    msg = sdk_world.mail_for(sent["data"]["id"]).message
    assert (msg["Subject"], msg["Reply-To"]) == ("Reset your password, there", "help@acme.test")
    assert msg.get_body(("plain",)).get_content().strip() == "Code: 123456"
    assert "<p>Use code 123456</p>" in msg.get_body(("html",)).get_content()
    copy = node("duplicate", id=tid)["data"]["id"]
    assert copy in [t["id"] for t in node("list", limit=100)["data"]["data"]]
    assert node("remove", id=copy)["data"] == {"object": "template", "id": copy, "deleted": True}
    assert node("get", id=copy)["error"]["statusCode"] == 404


def test_errors_reach_the_node_caller(node, sdk_world):
    r = node("createAndPublish", template={"name": "broken (node)", "html": "<p>{{{WHO}}}</p>"})
    assert r["data"] is None and r["error"]["statusCode"] == 422
    assert r["error"]["message"] == "html: {{{WHO}}} is used but not declared in variables"
    r = node("send", key=sdk_world.key, email={"from": FROM, "to": "bob@example.com", "html": "<p>x</p>",
                                                "template": {"id": "anything"}})
    assert r["error"]["statusCode"] == 422 and r["error"]["name"] == "validation_error"
    r = node("list", key=sdk_world.key)
    assert r["error"]["statusCode"] == 403 and r["error"]["name"] == "restricted_api_key"
