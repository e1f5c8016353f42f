"""Resend's Node SDK managing a service with a full-access key, unchanged but for the base URL
(tests/sdk/node/run.mjs; several calls share one node process: ``calls``): API keys, domains,
suppressions, webhooks with events, attempts and replay, the email list, strict (the SDK's
default) and permissive batches, a sending key refused, paths Postline does not offer."""
from __future__ import annotations

import time

from tests.sdk.test_resend_node import FROM
from tests.support.receiver import Receiver


def calls(node, *steps, key=None) -> list[dict]:
    """Each step ``(call, *args)``'s ``{data, error}``; an argument ``"$i.data.id"`` is step i's id."""
    out = node("calls", key=key, calls=[{"call": c, "args": list(a)} for c, *a in steps])
    assert out["error"] is None, out
    return out["data"]


def ok(result: dict) -> dict:
    assert result["error"] is None, result
    return result["data"]


def test_keys_domains_and_suppressions(node, sdk_world):
    key = sdk_world.full_key
    made, listed, renamed, relisted, removed = calls(
        node, ("apiKeys.create", {"name": "node key", "permission": "sending_access"}), ("apiKeys.list",),
        ("apiKeys.update", "$0.data.id", {"name": "node key 2"}), ("apiKeys.list",), ("apiKeys.remove", "$0.data.id"),
        key=key)
    kid = ok(made)["id"]
    assert ok(made)["token"].startswith("rs_eml_")
    assert {k["id"]: k["name"] for k in ok(listed)["data"]}[kid] == "node key"
    assert ok(renamed)["id"] == kid and {k["id"]: k["name"] for k in ok(relisted)["data"]}[kid] == "node key 2"
    assert ok(removed)["deleted"] is True

    [created] = calls(node, ("domains.create", {"name": "node.acme.test"}), key=key)
    domain = ok(created)
    for rec in domain["records"]:
        if rec["type"] == "TXT":
            sdk_world.dns.txt(rec["name"], [rec["value"][i:i + 255] for i in range(0, len(rec["value"]), 255)])
    verified, got, updated, listed, gone = calls(
        node, ("domains.verify", domain["id"]), ("domains.get", domain["id"]),
        ("domains.update", {"id": domain["id"], "trackingSubdomain": "t"}), ("domains.list",),
        ("domains.remove", domain["id"]), key=key)
    assert ok(verified)["id"] == domain["id"] and ok(got)["status"] == "verified"
    assert ok(updated)["id"] == domain["id"] and domain["id"] in [d["id"] for d in ok(listed)["data"]]
    assert ok(gone)["deleted"] is True

    added, by_email, listed, removed, missing = calls(
        node, ("suppressions.add", {"email": "node-gone@example.com"}), ("suppressions.get", "node-gone@example.com"),
        ("suppressions.list", {"origin": "manual"}), ("suppressions.remove", "$0.data.id"),
        ("suppressions.get", "$0.data.id"), key=key)
    assert ok(by_email)["id"] == ok(added)["id"] and ok(by_email)["origin"] == "manual"
    assert ok(added)["id"] in [s["id"] for s in ok(listed)["data"]]
    assert ok(removed)["deleted"] is True and missing["error"]["statusCode"] == 404


def test_webhooks_with_events_attempts_and_replay(node, sdk_world):
    key, endpoint = sdk_world.full_key, Receiver()
    try:
        made, got, updated, listed = calls(
            node, ("webhooks.create", {"endpoint": endpoint.url, "events": ["email.sent"]}),
            ("webhooks.get", "$0.data.id"), ("webhooks.update", "$0.data.id", {"events": ["email.delivered"]}),
            ("webhooks.list",), key=key)
        hook = ok(made)
        assert hook["signing_secret"].startswith("whsec_") and ok(got)["events"] == ["email.sent"]
        assert ok(updated)["id"] == hook["id"]
        assert {w["id"]: w["events"] for w in ok(listed)["data"]}[hook["id"]] == ["email.delivered"]
        sent = ok(node("send", email={"from": FROM, "to": "ann@example.com", "subject": "hooked (node)", "text": "x"}))
        endpoint.wait(1, 30, lambda r: sent["id"].encode() in r["body"])
        deadline, events = time.monotonic() + 30, []
        while not events and time.monotonic() < deadline:  # analytics loads the attempts in batches
            [listed] = calls(node, ("webhooks.events.list", {"webhookId": hook["id"]}), key=key)
            events = ok(listed)["data"]
            time.sleep(0.3)
        assert events and events[0]["type"] == "email.delivered"
        ids = {"webhookId": hook["id"], "eventId": events[0]["id"]}
        event, attempts, replayed, rotated, removed = calls(
            node, ("webhooks.events.get", ids), ("webhooks.events.attempts.list", ids), ("webhooks.events.replay", ids),
            ("webhooks.rotateSigningSecret", hook["id"]), ("webhooks.remove", hook["id"]), key=key)
        assert ok(event)["payload"]["email_id"] == sent["id"]
        assert [a["http_status_code"] for a in ok(attempts)["data"]] == [200]
        assert ok(replayed)["id"] == events[0]["id"]
        endpoint.wait(2, 30, lambda r: sent["id"].encode() in r["body"])
        assert ok(rotated)["signing_secret"] != hook["signing_secret"] and ok(removed)["deleted"] is True
    finally:
        endpoint.stop()


def test_the_email_list(node, sdk_world):
    sent = ok(node("send", email={"from": FROM, "to": "ann@example.com", "subject": "listed (node)", "text": "x"}))
    deadline, page = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        page = ok(node("calls", key=sdk_world.full_key, calls=[{"call": "emails.list", "args": [{"limit": 5}]}])["data"][0])
        if sent["id"] in [e["id"] for e in page["data"]]:
            break
        time.sleep(0.3)
    mine = next(e for e in page["data"] if e["id"] == sent["id"])
    assert page["object"] == "list" and mine["subject"] == "listed (node)" and mine["to"] == ["ann@example.com"]


def test_batches_strict_by_default_and_permissive(node, sdk_world):
    good = {"from": FROM, "to": ["ann@example.com"], "subject": "batch ok (node)", "text": "1"}
    bad = {"from": FROM, "to": ["nobody"], "subject": "batch bad (node)", "text": "2"}
    strict = node("batch", emails=[good, bad])  # the SDK sends x-batch-validation: strict by default
    assert strict["data"] is None and strict["error"]["statusCode"] == 422
    assert strict["error"]["name"] == "validation_error" and strict["error"]["message"].startswith("[1].to")
    permissive = ok(node("batchWith", emails=[good, bad], mode="permissive"))
    [sent] = permissive["data"]
    assert permissive["errors"][0]["index"] == 1
    assert sdk_world.mail_for(sent["id"]).message["Subject"] == "batch ok (node)"


def test_a_sending_key_is_refused_and_unoffered_paths_say_so(node, sdk_world):
    refused = calls(node, ("apiKeys.list",), ("domains.list",), ("suppressions.list",), ("webhooks.list",),
                    ("emails.list",))
    assert [(r["error"]["statusCode"], r["error"]["name"]) for r in refused] == [(403, "restricted_api_key")] * 5
    unoffered = calls(node, ("contacts.list",), ("broadcasts.list",), ("topics.list",), key=sdk_world.full_key)
    for r in unoffered:
        assert (r["error"]["statusCode"], r["error"]["name"]) == (404, "not_found")
        assert "Postline does not offer Resend's" in r["error"]["message"]
