"""The API's size rule equals what the relay builds: ``encoded_size`` is an upper bound of
``len(mime.build(...))``, tight to a few KB, for arbitrary Unicode (hypothesis) and for the
cases the issue found (10 M × "€" counted as 10 MB of characters)."""
from __future__ import annotations

import base64
import email
import email.policy

from hypothesis import HealthCheck, given, settings, strategies as st

from services.api.schemas import SendEmail
from services.relay.mime import build
from shared import events as ev
from shared.message_size import MAX_MESSAGE_BYTES, RESERVE, b64_size, encoded_size, fit_qp, qp_bound, qp_size

# every code point except surrogates (the API refuses those: tests/services/api/test_bad_input.py)
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
HTML = st.lists(st.sampled_from(["<p>", "</p>", "<hr>", "<blockquote>", "<b>x</b>", "&euro;", "<a href='https://e.x/'>l</a>",
                                 "\n", ".", "€ö", "<pre>a\nb</pre>", "<li>"]), max_size=200).map("".join)
RELAY_ADDS = 4096  # DKIM-Signature ×2, Return-Path, List-Unsubscribe: kept within RESERVE


def request(text, html, subject="s", headers=None, attachments=()):
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=ev.new_id(), mode="production",
                            sending_domain="acme.test", to=["ann@example.com"], recipients=["ann@example.com"],
                            subject=subject, text=text, html=html, headers=headers or {},
                            attachments=[ev.Attachment(filename=a[0], content_type=a[1], content_base64=a[2],
                                                        content_id=a[3] if len(a) > 3 else None) for a in attachments],
                            **{"from": "Acme <a@acme.test>"})


def bound(req: ev.SendRequested) -> int:
    return encoded_size(from_=req.from_, to=req.to, cc=req.cc, reply_to=req.reply_to, subject=req.subject,
                        headers=req.headers, html=req.html, text=req.text,
                        attachments=[(a.filename, a.content_type, a.content_base64, a.content_id) for a in req.attachments]).total


def well_formed(raw: bytes) -> email.message.EmailMessage:
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\r\n.\r\n" not in raw
    return email.message_from_bytes(raw, policy=email.policy.default)


@settings(max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(text=st.none() | TEXT, html=st.none() | HTML | TEXT, subject=TEXT.map(lambda s: s.replace("\r", "").replace("\n", "")),
       value=TEXT.map(lambda s: s.replace("\r", "").replace("\n", "")), blob=st.binary(max_size=300))
def test_bound_holds_and_message_is_well_formed(text, html, subject, value, blob):
    if text is None and html is None:
        text = ""
    req = request(text, html, subject, {"X-Note": value}, [("ä.bin", "application/octet-stream", base64.b64encode(blob).decode()),
                                                           ("logo.png", "image/png", base64.b64encode(blob).decode(), "logo@acme.test")])
    raw = build(req, "acme.test")
    assert len(raw) + RELAY_ADDS <= bound(req)
    msg = well_formed(raw)
    if text is not None:
        body = msg.get_body(("plain",)).get_content()
        assert body.replace("\r\n", "\n") == text.replace("\r\n", "\n").replace("\r", "\n")
    assert msg["X-Note"] == " ".join(value.split(" ")) or msg["X-Note"] == value


def test_bound_is_tight_for_large_bodies():
    euro = "€" * 200_000
    for req in (request(euro, None), request(None, f"<p>{euro}</p>"), request("x", None, attachments=[
            ("a.bin", "application/octet-stream", base64.b64encode(b"\x00" * 300_000).decode())])):
        raw = build(req, "acme.test")
        assert len(raw) <= bound(req) <= len(raw) + RESERVE + 2048


def test_parts_are_exact():
    from services.relay.mime import _b64, _qp

    for text in ("", "a", ".", "\n.\n", "a\r\nb\rc", "€" * 1000, "x" * 5000 + "\n." * 10, " \n\t\n"):
        assert qp_size(text) == len(_qp(text))
        assert not any(line.startswith(b".") for line in _qp(text).split(b"\r\n"))  # never dot-stuffed
    for n in range(0, 200):
        assert b64_size(base64.b64encode(b"a" * n).decode()) == len(_b64(b"a" * n))
    assert qp_size(fit_qp("€" * 1000, 300)) <= 300 < qp_size(fit_qp("€" * 1000, 300) + "€")


def test_the_api_counts_bytes_of_the_encoded_message():
    base = {"from": "a@acme.test", "to": "ann@example.com", "subject": "s"}
    many_euros = MAX_MESSAGE_BYTES // 3  # 3.5 M characters: ~10 MB of UTF-8, ~31 MB quoted-printable
    try:
        SendEmail.model_validate({**base, "text": "€" * many_euros})
        raise AssertionError("accepted")
    except ValueError as exc:
        assert "text: the encoded message would be" in str(exc)
    ok = SendEmail.model_validate({**base, "text": ("a" * 70 + "\n") * 140_000})  # 9.9 MB of ASCII lines
    assert ok.encoded_size().total <= MAX_MESSAGE_BYTES


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(text=TEXT | HTML)
def test_the_cheap_bound_is_an_upper_bound(text):
    assert qp_size(text) <= qp_bound(text)
