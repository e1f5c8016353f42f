"""Send API semantics through HTTP on both doors, against a running `postline all` that
delivers to an SMTP sink (issue: send semantics)."""
from __future__ import annotations

import base64
import concurrent.futures
import json
import time

import pytest

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, dkim_results, sink_reader
from tests.support.smtp_sink import SmtpSink
from tests.support.waiting import caught_up

ANN, BOB = "ann@example.com", "bob@example.com"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One running Postline, a sink, DNS; a sandbox service and a production service."""
    tmp = tmp_path_factory.mktemp("send")
    sink, dns = SmtpSink().start(), DnsServer().start()
    proc = PostlineProcess(tmp / "data", env={"POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
                                              "POSTLINE_DNS_SERVER": dns.address}).start()
    api = Api(proc.url)
    sandbox_sid = api.create_service("sandboxed")
    sandbox_key = api.create_key(sandbox_sid)
    api.verify_sandbox(sandbox_sid, ANN, sink_reader(sink))
    prod_sid = api.create_service("prod")
    prod_key = api.create_key(prod_sid)
    api.verify_sandbox(prod_sid, ANN, sink_reader(sink))
    d = api.admin("POST", f"/api/email/services/{prod_sid}/domains", json={"domain": "acme.test"}).json()
    for rec in d["records"]:
        if rec["type"] == "TXT":
            dns.txt(rec["name"], rec.get("value_strings") or rec["value"])
    assert api.admin("POST", f"/api/email/services/{prod_sid}/domains/{d['id']}/verify").json()["verified"]
    assert api.admin("PATCH", f"/api/email/services/{prod_sid}", json={"mode": "production"}).status_code == 200
    yield {"api": api, "sink": sink, "proc": proc, "dns": dns, "sandbox": (sandbox_sid, sandbox_key), "prod": (prod_sid, prod_key)}
    proc.stop()
    sink.stop()
    dns.stop()


def send(world, body, door="emails", which="prod", headers=None):
    sid, key = world[which]
    api = world["api"]
    if door == "emails":
        return api.http.post("/emails", json=body, headers={"Api-Key": key, **(headers or {})})
    return api.http.post(f"/api/email/services/{sid}/send", json=body,
                         headers={"Authorization": f"Bearer {key}", **(headers or {})})


def delivered(world, email_id: str):
    """The first SMTP transaction of a message; a message from a verified domain must carry
    two DKIM signatures (RSA and Ed25519) that verify against the published DNS."""
    got = world["sink"].wait_for(lambda m: f"<{email_id}@".encode() in m.data)[0]
    if b"@acme.test>\r\n" in got.data.split(b"Message-ID:", 1)[1][:80]:
        assert dkim_results(got.data, world["dns"].address) == [True, True]
    return got


def all_rcpts(world, email_id: str, n: int) -> list[str]:
    """Recipients of every SMTP transaction of one message (one per recipient: VERP)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = [r for m in world["sink"].received if f"<{email_id}@".encode() in m.data for r in m.rcpt_tos]
        if len(got) >= n:
            return sorted(got)
        time.sleep(0.05)
    raise AssertionError(f"only {got} received")


BASE = {"from": "Acme <hello@acme.test>", "to": BOB, "subject": "Hi", "text": "plain body"}
DOORS = ["emails", "service"]


@pytest.mark.parametrize("door", DOORS)
def test_from_forms_and_recipient_lists(world, door):
    body = {**BASE, "from": "hello@acme.test", "to": [BOB, "Carol <carol@example.com>"],
            "cc": "dan@example.com", "bcc": ["eve@example.com"], "reply_to": "support@acme.test"}
    r = send(world, body, door)
    assert r.status_code == 200, r.text
    got = delivered(world, r.json()["id"])
    assert all_rcpts(world, r.json()["id"], 4) == sorted([BOB, "carol@example.com", "dan@example.com", "eve@example.com"])
    assert got.mail_from.startswith("bounces+") and got.mail_from.endswith("@bounces.acme.test")
    assert dkim_results(got.data, world["dns"].address) == [True, True]
    assert b"a=ed25519-sha256" in got.data and b"a=rsa-sha256" in got.data
    msg = got.message
    assert msg["From"] == "hello@acme.test"
    assert msg["To"] == "bob@example.com, Carol <carol@example.com>"
    assert msg["Cc"] == "dan@example.com" and msg["Bcc"] is None
    assert msg["Reply-To"] == "support@acme.test"
    assert r.json()["mode"] == "production" and r.json()["from"] == "hello@acme.test"


@pytest.mark.parametrize("door", DOORS)
def test_html_only_gets_a_derived_text_part(world, door):
    r = send(world, {**BASE, "text": None, "html": "<h1>Title</h1><p>Hello <a href='https://x.test'>link</a></p>"}, door)
    assert r.status_code == 200, r.text
    msg = delivered(world, r.json()["id"]).message
    plain = msg.get_body(("plain",)).get_content()
    assert "Title" in plain and "link" in plain and "<p>" not in plain


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("patch,field", [
    ({"text": None}, "message"),
    ({"to": []}, "to"),
    ({"to": "not-an-address"}, "to"),
    ({"cc": [BOB, "bad@"]}, "cc"),
    ({"from": "Acme <hello@acme.test"}, "from"),
    ({"subject": 5}, "subject"),
    ({"subject": "Hi\r\nBcc: victim@example.com"}, "subject"),
    ({"from": "Acme\r\nBcc: x@example.com <hello@acme.test>"}, "from"),
    ({"headers": {"X-Ok": "a\nb"}}, "headers"),
    ({"headers": {"From": "x@example.com"}}, "headers"),
    ({"headers": {"DKIM-Signature": "v=1"}}, "headers"),
    ({"headers": {"Message-ID": "<x@y>"}}, "headers"),
    ({"headers": {"Return-Path": "<x@y>"}}, "headers"),
    ({"headers": {"Precedence": "bulk"}}, "headers"),
    ({"headers": ["X-A"]}, "headers"),
    ({"headers": {"X-Foo\n": "v"}}, "headers"),  # a trailing newline in a header name (regex `$`)
    ({"tags": ["ok", "no spaces"]}, "tags"),
    ({"tags": ["t\n"]}, "tags"),
    ({"tags": "x"}, "tags"),
    ({"to": [f"u{i}@example.com" for i in range(51)]}, "to"),
    ({"attachments": [{"filename": "run.exe", "content_base64": "AA==", "content_type": "application/octet-stream"}]}, "attachments"),
    ({"attachments": [{"filename": "a.txt", "content_base64": "!!notbase64", "content_type": "text/plain"}]}, "attachments"),
    ({"attachments": [{"filename": "big.bin", "content_base64": base64.b64encode(b"x" * (8 * 1024 * 1024)).decode()}]}, "attachments"),
    ({"unknown": 1}, "unknown"),
    ({"scheduled_at": "2099-01-01T00:00:00Z"}, "scheduled_at"),
])
def test_bad_bodies_are_400_naming_the_field(world, door, patch, field):
    r = send(world, {k: v for k, v in {**BASE, **patch}.items() if v is not None}, door)
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith(field), r.json()


@pytest.mark.parametrize("door", DOORS)
def test_idn_recipient_and_attachment(world, door):
    att = {"filename": "receipt.pdf", "content_base64": base64.b64encode(b"%PDF-1.4 test").decode(),
           "content_type": "application/pdf"}
    r = send(world, {**BASE, "to": ["user@bücher.example", "jörg@bücher.example"], "attachments": [att], "tags": ["receipt"]}, door)
    assert r.status_code == 200, r.text
    got = delivered(world, r.json()["id"])
    # an IDN domain goes out as its A-label; a non-ASCII local part goes out with SMTPUTF8
    assert all_rcpts(world, r.json()["id"], 2) == sorted(["user@xn--bcher-kva.example", "jörg@bücher.example"])
    msg = got.message
    assert msg.get_content_type() == "multipart/mixed"
    parts = [p for p in msg.iter_attachments()]
    assert parts[0].get_filename() == "receipt.pdf" and parts[0].get_content() == b"%PDF-1.4 test"


def test_sandbox_door_emails_refuses_unverified_recipient(world):
    r = send(world, {**BASE, "to": [ANN, BOB]}, "emails", which="sandbox")
    assert r.status_code == 400 and BOB in r.json()["error"]


def test_sandbox_service_door_drops_unverified_recipient(world):
    api = world["api"]
    r = send(world, {**BASE, "to": [ANN, BOB]}, "service", which="sandbox")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "sandbox" and body["from"] == "Acme <sandbox@postline.localhost>"
    assert body["dropped"] == [{"recipient": BOB, "reason": "sandbox"}]
    got = delivered(world, body["id"])
    assert got.rcpt_tos == [ANN]
    assert got.message["Reply-To"] == "Acme <hello@acme.test>"
    rec = api.wait_status(world["sandbox"][1], body["id"], BOB, "dropped")
    assert rec["recipients"][BOB]["reason"] == "sandbox"


@pytest.mark.parametrize("door", DOORS)
def test_production_unverified_from_falls_back_to_sandbox(world, door):
    r = send(world, {**BASE, "from": "Other <me@other.test>", "to": ANN}, door)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "sandbox_fallback"
    assert body["from"] == "Other <sandbox@postline.localhost>"
    msg = delivered(world, body["id"]).message
    assert msg["From"] == "Other <sandbox@postline.localhost>" and msg["Reply-To"] == "Other <me@other.test>"
    # the sandbox recipient rules apply: BOB is not a verified sandbox recipient of prod
    r = send(world, {**BASE, "from": "me@other.test", "to": BOB}, "emails")
    assert r.status_code == 400 and BOB in r.json()["error"]


@pytest.mark.parametrize("door", DOORS)
def test_suppressed_recipient_is_dropped(world, door):
    api = world["api"]
    sid, key = world["prod"]
    victim = f"suppressed-{door}@example.com"
    assert api.admin("POST", f"/api/email/services/{sid}/suppressions", json={"email": victim}).status_code == 201
    r = send(world, {**BASE, "to": [victim, BOB]}, door)
    body = r.json()
    assert body["dropped"] == [{"recipient": victim, "reason": "suppressed"}]
    assert all_rcpts(world, body["id"], 1) == [BOB]
    api.wait_status(key, body["id"], victim, "dropped")
    assert api.admin("DELETE", f"/api/email/services/{sid}/suppressions/{victim}").status_code == 204
    r = send(world, {**BASE, "to": victim}, door)
    assert delivered(world, r.json()["id"]).rcpt_tos == [victim]


@pytest.mark.parametrize("door", DOORS)
def test_rate_limit_headers_on_every_send_response(world, door):
    r = send(world, BASE, door)
    for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert h in r.headers
    assert int(r.headers["RateLimit-Remaining"]) < int(r.headers["RateLimit-Limit"])
    # ... and on the refusals of a send door too: a body the schema refuses, no body, a used
    # Idempotency-Key with another body, a strict batch with an invalid item
    key = {"Idempotency-Key": f"rl-{door}"}
    assert send(world, BASE, door, headers=key).status_code == 200
    refusals = [send(world, {"to": "bob"}, door), send(world, None, door),
                send(world, {**BASE, "subject": "another body"}, door, headers=key),
                world["api"].http.post("/emails/batch", json=[BASE, {"to": "x"}], headers={"Api-Key": world["prod"][1]}),
                # a key of another service than the one in the path
                world["api"].http.post(f"/api/email/services/{world['sandbox'][0]}/send", json=BASE,
                                       headers={"Authorization": f"Bearer {world['prod'][1]}"})]
    for refused in refusals:
        assert refused.status_code in (400, 403, 409, 415, 422), refused.text
        assert all(h in refused.headers for h in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")), \
            (refused.status_code, refused.text)
    bad = send(world, {**BASE, "to": "nope"}, door)
    assert bad.status_code == 400
    svc = world["api"].admin("GET", f"/api/email/services/{world['prod'][0]}").json()
    assert svc["rate_limits"]["per_minute"] == 600 and svc["rate_limits"]["per_day"] == 10_000
    assert svc["rate_limits"]["usage"]["this_minute"] >= 1


@pytest.mark.parametrize("door", DOORS)
def test_idempotency_key(world, door):
    key = f"order-1234-{door}"
    first = send(world, BASE, door, headers={"Idempotency-Key": key})
    again = send(world, BASE, door, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    other = send(world, {**BASE, "subject": "changed"}, door, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]
    delivered(world, first.json()["id"])
    caught_up(world["api"], world["prod"][1], world["sink"])
    assert len([m for m in world["sink"].received if first.json()["id"].encode() in m.data]) == 1


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_an_empty_idempotency_key_is_refused_on_both_paths(world, content_type):
    """An empty key would be one key for every send of the service: later sends answered with
    the first one's response and nothing sent."""
    _, key = world["prod"]
    r = world["api"].http.post("/emails", content=json.dumps(BASE),
                               headers={"Api-Key": key, "Content-Type": content_type, "Idempotency-Key": ""})
    assert r.status_code == 400 and r.json()["error"].startswith("Idempotency-Key"), r.text


# The send fast path (services/api/send_fast_path.py) takes exactly ``application/json``;
# the same body with a charset parameter goes through FastAPI's route. Both must answer alike.
FAST, FULL = "application/json", "application/json; charset=utf-8"
ANSWERED_ALIKE = [
    ("prod", "emails", {**BASE, "to": [ANN], "cc": BOB, "tags": ["a"], "html": "<p>hi</p>", "track_opens": True}),
    ("prod", "service", {**BASE, "from": "Other <me@other.test>", "to": ANN}),
    ("sandbox", "service", {**BASE, "to": [ANN, BOB]}),  # BOB dropped: not a verified sandbox recipient
    ("sandbox", "emails", {**BASE, "to": [ANN, BOB]}),  # a refusal after the schema and the key passed
    ("prod", "emails", {**BASE, "to": "nope"}),  # the schema refuses
    ("prod", "emails", {**BASE, "attachments": [{"filename": "a.exe", "content": "eA=="}]}),
]


@pytest.mark.parametrize("which,door,body", ANSWERED_ALIKE)
def test_fast_and_full_send_paths_answer_alike(world, which, door, body):
    answers = []
    for i, content_type in enumerate((FAST, FULL)):
        sid, key = world[which]
        path = "/emails" if door == "emails" else f"/api/email/services/{sid}/send"
        headers = {"Api-Key" if door == "emails" else "Authorization": key if door == "emails" else f"Bearer {key}",
                   "Content-Type": content_type, "Idempotency-Key": f"alike-{which}-{door}-{len(str(body))}-{i}"}
        r = world["api"].http.post(path, content=json.dumps(body), headers=headers)
        answer = r.json()
        answer.pop("id", None)  # a new message each time
        answers.append((r.status_code, answer, sorted(r.headers.keys())))
    assert answers[0] == answers[1]


def test_thousand_concurrent_sends_with_one_key_make_one_message(world):
    api = world["api"]
    _, key = world["prod"]
    body = {**BASE, "subject": "concurrent"}

    def one(_):
        import httpx

        return httpx.post(f"{world['proc'].url}/emails", json=body,
                          headers={"Api-Key": key, "Idempotency-Key": "same-key-1000"}, timeout=60)

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        responses = list(pool.map(one, range(1000)))
    assert {r.status_code for r in responses} == {200}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    email_id = ids.pop()
    delivered(world, email_id)
    api.wait_status(key, email_id, BOB, "delivered")
    caught_up(api, key, world["sink"])
    assert len([m for m in world["sink"].received if email_id.encode() in m.data]) == 1


def test_batch_per_item_results(world):
    _, key = world["prod"]
    api = world["api"]
    items = [{**BASE, "subject": "batch 1"}, {**BASE, "to": "broken"}, {**BASE, "subject": "batch 3"}]
    r = api.http.post("/emails/batch", json=items, headers={"Api-Key": key, "x-batch-validation": "permissive"})
    assert r.status_code == 200, r.text
    data, [error] = r.json()["data"], r.json()["errors"]
    assert [d["status"] for d in data] == ["sent", "sent"]
    assert error["index"] == 1 and error["message"].startswith("[1].to")
    for item in data:
        delivered(world, item["id"])
    too_many = api.http.post("/emails/batch", json=[BASE] * 101, headers={"Api-Key": key})
    assert too_many.status_code == 400


@pytest.mark.parametrize("door", DOORS)
def test_header_injection_never_reaches_the_wire(world, door):
    """Encoded-word newlines and odd-but-valid inputs are carried as data, never as headers."""
    vectors = [
        {"subject": "=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?="},
        {"subject": "=?utf-8?b?SGkNCkJjYzogdmljdGltQGV4YW1wbGUuY29t?="},
        {"from": '"Evil =?utf-8?q?=0D=0ABcc:_victim@example.com?=" <hello@acme.test>'},
        {"headers": {"X-Note": "=?utf-8?q?a=0D=0ABcc:_victim@example.com?="}},
        {"subject": "Hi\u2028Bcc: victim@example.com"},
        {"subject": "Hi\u0085Bcc: victim@example.com"},
    ]
    for patch in vectors:
        r = send(world, {**BASE, **patch}, door)
        if r.status_code == 400:
            continue
        assert r.status_code == 200, r.text
        got = delivered(world, r.json()["id"])
        assert got.rcpt_tos == [BOB]
        head = got.data.split(b"\r\n\r\n", 1)[0]
        names = [line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if line and line[:1] not in (b" ", b"\t")]
        assert b"bcc" not in names, head
        assert b"\n" not in head.replace(b"\r\n", b"")
    for patch in ({"subject": "a\rb"}, {"subject": "a\nBcc: v@example.com"}, {"to": "Ann\r\n <ann@example.com>"},
                  {"headers": {"X-A": "v\r\nBcc: v@example.com"}}, {"subject": "nul\x00byte"}):
        assert send(world, {**BASE, **patch}, door).status_code == 400


def test_scheduled_send_waits_and_survives_restart(world, tmp_path):
    api, sink = world["api"], world["sink"]
    _, key = world["prod"]
    from datetime import datetime, timedelta, timezone

    at = datetime.now(timezone.utc) + timedelta(seconds=4)
    r = send(world, {**BASE, "subject": "later", "scheduled_at": at.isoformat()}, "emails")
    assert r.status_code == 200, r.text
    email_id = r.json()["id"]
    proc = world["proc"]
    proc.stop()
    proc.start()
    got = sink.wait_for(lambda m: email_id.encode() in m.data, timeout=30)
    assert got[0].at >= at.timestamp() - 0.05
    assert api.http.get(f"/emails/{email_id}", headers={"Api-Key": key}).json()["scheduled_at"]


def test_sandbox_daily_cap_is_429_with_retry_after(world):
    api, sink = world["api"], world["sink"]
    sid = api.create_service("capped")
    key = api.create_key(sid)
    api.verify_sandbox(sid, ANN, sink_reader(sink))
    for i in range(50):
        r = api.send(key, {**BASE, "to": ANN, "subject": f"cap {i}"})
        assert r.status_code == 200, (i, r.text)
    r = api.send(key, {**BASE, "to": ANN, "subject": "one too many"})
    assert r.status_code == 429
    assert "sandbox day" in r.json()["error"]
    assert int(r.headers["Retry-After"]) > 0
    assert r.headers["RateLimit-Remaining"] == "0" and r.headers["RateLimit-Limit"] == "50"
