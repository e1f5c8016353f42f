"""Resend's Node SDK (npm ``resend``, pinned in tests/sdk/node/package.json and installed by
``make test-deps``), unchanged, pointed at a running Postline by ``RESEND_BASE_URL`` only.
Each case runs tests/sdk/node/run.mjs, which prints the SDK's ``{data, error}`` (the ``node``
fixture, tests/sdk/conftest.py)."""
from __future__ import annotations

FROM = "Acme <hello@acme.test>"


def test_send(node, sdk_world):
    r = node("send", email={"from": FROM, "to": ["ann@example.com"], "subject": "Welcome (node)",
                            "html": "<p>Hello from the Node SDK</p>", "replyTo": "help@acme.test"})
    assert r["error"] is None
    msg = sdk_world.mail_for(r["data"]["id"]).message
    assert msg["Subject"] == "Welcome (node)" and msg["Reply-To"] == "help@acme.test"
    assert "Hello from the Node SDK" in msg.get_body(("html",)).get_content()


def test_send_with_tags_and_attachment(node, sdk_world):
    r = node("sendWithAttachment", filename="notes.txt", content="line one\nline two\n",
             email={"from": FROM, "to": "bob@example.com", "subject": "Notes (node)", "text": "Attached.",
                    "tags": [{"name": "category", "value": "notes_node"}]})
    assert r["error"] is None, r
    msg = sdk_world.mail_for(r["data"]["id"]).message
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "notes.txt" and part.get_content_type() == "text/plain"
    assert part.get_content().replace("\r\n", "\n") == "line one\nline two\n"
    assert sdk_world.record(r["data"]["id"])["tags"] == ["category:notes_node"]
    sdk_world.wait_record(r["data"]["id"], lambda _: sdk_world.tag_count("category:notes_node") >= 1)


def test_batch(node, sdk_world):
    r = node("batch", emails=[{"from": FROM, "to": ["ann@example.com"], "subject": "Batch one (node)", "text": "1"},
                              {"from": FROM, "to": ["bob@example.com"], "subject": "Batch two (node)", "text": "2"}])
    assert r["error"] is None
    ids = [item["id"] for item in r["data"]["data"]]
    assert [sdk_world.mail_for(i).message["Subject"] for i in ids] == ["Batch one (node)", "Batch two (node)"]


def test_batch_with_an_idempotency_key_sends_once(node, sdk_world):
    """``batch.send(emails, {idempotencyKey})``: the SDK's retry of a batch answers the first
    response, and each item goes out once."""
    emails = [{"from": FROM, "to": ["ann@example.com"], "subject": "Keyed batch one (node)", "text": "1"},
              {"from": FROM, "to": ["bob@example.com"], "subject": "Keyed batch two (node)", "text": "2"}]
    call = {"call": "batch.send", "args": [emails, {"idempotencyKey": "nightly-digest-2026-12-07"}]}
    r = node("calls", calls=[call, call])
    first, again = r["data"]
    assert first["error"] is None and again == first
    ids = [item["id"] for item in first["data"]["data"]]
    for i in ids:
        sdk_world.wait_record(i, lambda rec: rec["last_event"] == "delivered")
    with sdk_world.sink.lock:
        copies = [sum(f"<{i}@".encode() in m.data for m in sdk_world.sink.received) for i in ids]
    assert copies == [1, 1]


def test_get(node, sdk_world):
    sent = node("send", email={"from": FROM, "to": "ann@example.com", "subject": "Look me up (node)", "text": "hi"})
    email_id = sent["data"]["id"]
    sdk_world.wait_record(email_id, lambda r: r["last_event"] == "delivered")
    r = node("get", id=email_id)
    assert r["error"] is None
    got = r["data"]
    assert (got["object"], got["id"], got["last_event"]) == ("email", email_id, "delivered")
    assert got["to"] == ["ann@example.com"] and got["subject"] == "Look me up (node)" and got["created_at"]


def test_schedule_reschedule_cancel(node, sdk_world):
    sent = node("send", email={"from": FROM, "to": "ann@example.com", "subject": "Later (node)", "text": "soon",
                               "scheduledAt": "in 1 min"})
    email_id = sent["data"]["id"]
    sdk_world.wait_record(email_id, lambda r: r["last_event"] == "scheduled" and r["events"])
    moved = node("update", id=email_id, scheduledAt="tomorrow at 9am")
    assert moved == {"data": {"object": "email", "id": email_id}, "error": None}
    sdk_world.wait_record(email_id, lambda r: sum(e["type"] == "scheduled" for e in r["events"]) == 2)
    assert node("cancel", id=email_id) == {"data": {"object": "email", "id": email_id}, "error": None}
    sdk_world.wait_record(email_id, lambda r: r["recipients"]["ann@example.com"]["status"] == "canceled")
    again = node("cancel", id=email_id)
    assert again["data"] is None and again["error"]["statusCode"] == 409
    assert "was canceled" in again["error"]["message"]


def test_errors_reach_the_caller_through_the_sdk(node):
    r = node("send", email={"from": FROM, "to": "ann@example.com", "subject": "x", "text": "x",
                            "tags": [{"name": "has space", "value": "v"}]})
    assert r["data"] is None
    assert r["error"]["statusCode"] == 400 and r["error"]["name"] == "validation_error"
    assert r["error"]["message"].startswith("tags")
    r = node("send", key="rs_eml_" + "x" * 32, email={"from": FROM, "to": "ann@example.com", "subject": "x", "text": "x"})
    assert r["error"] == {"error": "invalid API key", "message": "invalid API key", "name": "invalid_api_key",
                          "statusCode": 401}
