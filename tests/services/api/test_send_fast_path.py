"""The send fast path's judgement in-process (services/api/send_fast_path.py): it takes only a
send the FastAPI route would accept as is, and hands everything else on to the app with its
body intact. That both paths then answer alike is tested over HTTP in test_send_rules.py."""
from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace

import pytest

from services.api.send_fast_path import SendFastPath, door_of, judge
from services.api.throttle import Blocked
from shared import events as ev
from shared.control.errors import ControlBehind
from shared.control.state import ControlState
from shared.crypto import hash_secret

NOW = ev.utcnow()
KEY = "rs_eml_" + "k" * 32
BODY = {"from": "hello@acme.test", "to": "ann@example.com", "subject": "hi", "text": "t"}
JSON = {b"content-type": b"application/json", b"api-key": KEY.encode()}


def judged(*args):
    return asyncio.run(judge(*args))


def runtime(status: str = "active", blocked: bool = False, behind: bool = False):
    state = ControlState()
    state.apply(ev.ServiceSaved(workspace_id="w", service_id="s", name="app", created_at=NOW, status=status))
    state.apply(ev.ApiKeySaved(workspace_id="w", service_id="s", key_id="k", name="k", key_hash=hash_secret(KEY),
                               prefix=KEY[:11], created_at=NOW))
    async def caught_up():  # one process: nothing to catch up with, unless the log is out of reach
        if behind:
            raise ControlBehind("the event log is unavailable")

    def check(address, account):  # the throttle: blocked or not, whoever asks
        return Blocked("address", 5) if blocked else None

    return SimpleNamespace(control=SimpleNamespace(state=state, catch_up=caught_up), throttle=SimpleNamespace(check=check))


def test_only_the_two_send_paths_are_doors():
    http = {"type": "http", "method": "POST"}
    assert door_of({**http, "path": "/emails"}) == ("emails", None)
    assert door_of({**http, "path": "/api/email/services/s1/send"}) == ("service", "s1")
    for path in ("/emails/", "/emails/batch", "/api/email/services//send", "/api/email/services/s1/send/x"):
        assert door_of({**http, "path": path}) is None
    assert door_of({**http, "method": "GET", "path": "/emails"}) is None


def test_a_plain_send_is_taken_with_either_key_header():
    raw = json.dumps(BODY).encode()
    caller, body, idem = judged(runtime(), JSON, raw, None)
    assert caller.service.service_id == "s" and body.subject == "hi" and idem is None
    bearer = {b"content-type": b"application/json", b"authorization": f"Bearer {KEY}".encode(), b"idempotency-key": b"o-1"}
    assert judged(runtime(), bearer, raw, "s")[2] == "o-1"


@pytest.mark.parametrize("why,headers,raw,service_id,rt", [
    ("another content type", {**JSON, b"content-type": b"application/json; charset=utf-8"}, BODY, None, "active"),
    ("no key", {b"content-type": b"application/json"}, BODY, None, "active"),
    ("an unknown key", {**JSON, b"api-key": b"rs_eml_nope"}, BODY, None, "active"),
    ("a disabled service", JSON, BODY, None, "disabled"),
    ("the key of another service", JSON, BODY, "other", "active"),
    ("not JSON", JSON, b"{", None, "active"),
    ("not an object", JSON, [BODY], None, "active"),
    ("a body the schema refuses", JSON, {**BODY, "to": "nope"}, None, "active"),
])
def test_anything_else_goes_on_to_the_route(why, headers, raw, service_id, rt):
    raw = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    assert judged(runtime(rt), headers, raw, service_id) is None, why


def test_a_blocked_caller_goes_on_to_the_route_which_answers_429():
    raw = json.dumps(BODY).encode()
    assert judged(runtime(), JSON, raw, None, "127.0.0.1") is not None
    assert judged(runtime(blocked=True), JSON, raw, None, "127.0.0.1") is None


def run_door(rt, headers: dict[bytes, bytes], chunks: list[bytes], limit: int = 1000) -> tuple[list, list]:
    """One POST /emails through the fast path in front of an app that records the body it
    reads: (what the app read — "early" for a client read the fast path made before handing
    on —, the messages the fast path answered with itself)."""
    seen: list = []
    answered: list = []
    app_started = False

    async def app(scope, receive, send):
        nonlocal app_started
        app_started = True
        more = True
        while more:
            message = await receive()
            seen.append(message["body"])
            more = message.get("more_body", False)

    stream = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

    async def client():
        if not app_started:
            seen.append("early")
        return stream.pop(0)

    async def send(message):
        answered.append(message)

    scope = {"type": "http", "method": "POST", "path": "/emails", "headers": list(headers.items()), "client": ("127.0.0.1", 1)}
    asyncio.run(SendFastPath(app, rt, max_body_bytes=limit)(scope, client, send))
    return seen, answered


def handed_on(rt, headers: dict[bytes, bytes], chunks: list[bytes], limit: int = 1000) -> list:
    """What the app read of a request the fast path must hand on (nothing answered by it)."""
    seen, answered = run_door(rt, headers, chunks, limit)
    assert answered == []
    return [c for c in seen if c != "early"]


def test_a_request_handed_on_keeps_its_body():
    assert handed_on(runtime(), JSON, [b'{"to": "nope"}']) == [b'{"to": "nope"}']


def test_a_body_over_the_limit_is_handed_on_whole_for_the_apps_413():
    """Reading stops past the limit; the app then reads what was read and the rest."""
    body = json.dumps(BODY).encode()
    chunks = [body[:20], body[20:40], body[40:]]
    assert b"".join(handed_on(runtime(), JSON, chunks, limit=30)) == body
    declared = {**JSON, b"content-length": str(len(body)).encode()}  # declared too large: not read at all
    assert run_door(runtime(), declared, [body], limit=30) == ([body], [])
    assert run_door(runtime(), JSON, chunks, limit=30)[0][:2] == ["early", "early"]  # undeclared: read to the limit


def test_a_log_out_of_reach_is_the_catch_ups_503_after_the_key_and_throttle_checks():
    raw = json.dumps(BODY).encode()
    _, answered = run_door(runtime(behind=True), JSON, [raw])
    start, body = answered
    headers = dict(start["headers"])
    assert start["status"] == 503 and headers[b"retry-after"] == b"1" and headers[b"x-request-id"]
    assert json.loads(body["body"])["error"] == "the event log is unavailable"
    keyless = {b"content-type": b"application/json"}
    assert handed_on(runtime(behind=True), keyless, [raw]) == [raw]  # the app's 401, as the route's order has it
    assert handed_on(runtime(behind=True, blocked=True), JSON, [raw]) == [raw]  # the app's 429
    # the app reads the JSON (and refuses unencodable text) before the route's catch-up: its 400
    for refused in (b"{", json.dumps({**BODY, "subject": "\udfff"}).encode()):
        assert handed_on(runtime(behind=True), JSON, [refused]) == [refused]


def test_resend_php_is_handed_on_for_its_error_shape():
    raw = json.dumps(BODY).encode()
    assert handed_on(runtime(), {**JSON, b"user-agent": b"resend-php/0.12.0"}, [raw]) == [raw]


def test_a_fault_while_judging_is_left_to_the_app_and_logged_once(caplog):
    """The app meets the same request (and any fault again: its 500, request id and log line)."""
    rt = runtime()

    async def broken():
        raise RuntimeError("state unreadable")

    rt.control.catch_up = broken
    raw = json.dumps(BODY).encode()
    with caplog.at_level(logging.WARNING, logger="services.api.send_fast_path"):
        door = SendFastPath(None, rt, max_body_bytes=1000)
        for _ in range(3):
            seen = []

            async def app(scope, receive, send):
                seen.append((await receive())["body"])

            async def client():
                return {"type": "http.request", "body": raw, "more_body": False}

            door.app = app
            scope = {"type": "http", "method": "POST", "path": "/emails", "headers": list(JSON.items()), "client": ("127.0.0.1", 1)}
            asyncio.run(door(scope, client, None))
            assert seen == [raw]
    warnings = [r for r in caplog.records if r.name == "services.api.send_fast_path"]
    assert len(warnings) == 1 and warnings[0].exc_info and "state unreadable" in str(warnings[0].exc_info[1])
