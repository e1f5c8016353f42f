"""Hypothesis over the body encoder, end to end: arbitrary Unicode (surrogates included) in
the subject, text, HTML and an extra header of a send to a real `postline all` is either
accepted or refused with a 400 naming the field, never a 5xx; every accepted message reaches
the dev inbox well formed, its text part decoding back to what was sent."""
from __future__ import annotations

import email
import email.policy
import json
import sqlite3
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.support.dns_server import DnsServer
from tests.support.postline import Api, PostlineProcess, production_service

CLEAN = st.text(st.characters(blacklist_categories=()), max_size=60)  # every code point (a surrogate is rare)
LONE = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
DIRTY = st.tuples(CLEAN, LONE, CLEAN).map("".join)  # a lone surrogate somewhere
ANY = st.one_of(CLEAN, CLEAN, CLEAN, DIRTY)  # a quarter of the values carry one
FIELDS = ("subject", "text", "message", "headers")


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    dns = DnsServer().start()
    proc = PostlineProcess(tmp_path_factory.mktemp("encfuzz") / "data", env={"POSTLINE_DNS_SERVER": dns.address}).start()
    _, key = production_service(Api(proc.url), dns)
    yield proc, key
    proc.stop()
    dns.stop()


def well_formed(raw: bytes) -> email.message.EmailMessage:
    assert raw.isascii(), "an ASCII recipient and sender: the whole message is 7-bit"
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_arbitrary_unicode_is_sent_or_refused_never_a_5xx(running):
    proc, key = running
    accepted: dict[str, str] = {}
    client = httpx.Client(base_url=proc.url, headers={"Api-Key": key, "Content-Type": "application/json"}, timeout=30)

    @given(subject=ANY, text=ANY, html=ANY, header=ANY)
    @settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    def send(subject, text, html, header):
        body = {"from": "Acme <a@acme.test>", "to": "ann@example.com", "subject": subject, "text": text,
                "message": html, "headers": {"X-Fuzz": header}}
        r = client.post("/emails", content=json.dumps(body).encode())  # \\udxxx escapes for surrogates
        assert r.status_code in (200, 400), (r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()["error"].split(":")[0].split(".")[0] in FIELDS, r.text
        else:
            accepted[r.json()["id"]] = text

    send()
    client.close()
    assert accepted, "hypothesis generated nothing acceptable"
    inbox = proc.data_dir / "inbox.sqlite3"
    deadline = time.monotonic() + 60
    rows = []
    while time.monotonic() < deadline:
        with sqlite3.connect(inbox) as db:
            rows = db.execute("SELECT raw FROM mail").fetchall()
        if len(rows) >= len(accepted):
            break
        time.sleep(0.2)
    assert len(rows) == len(accepted)
    for (raw,) in rows:
        msg = well_formed(raw)
        sent_text = accepted[msg["X-Postline-Id"]]
        got = msg.get_body(("plain",)).get_content()
        assert got.replace("\r\n", "\n") == sent_text.replace("\r\n", "\n").replace("\r", "\n")
