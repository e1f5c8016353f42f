"""Tracking tokens: round trip, and anything not signed by this key for this kind is None."""
from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.tracking import Tokens

KEY, EMAIL, SVC = b"m" * 32, "5b1c8a7e-3f7e-4f5e-9a50-0b1f4e7f2a11", "9d3c1a2b-0000-4000-8000-00000000abcd"


def test_round_trip_and_compactness():
    t = Tokens(KEY)
    tok = t.make("click", EMAIL, SVC, "ann@example.com", 7, "https://ex.com/p?q=1&r=ü#frag", issued=1_800_000_000)
    got = t.verify(tok, "click")
    assert (got.email_id, got.service_id, got.recipient, got.link, got.url, got.issued) == (
        EMAIL, SVC, "ann@example.com", 7, "https://ex.com/p?q=1&r=ü#frag", 1_800_000_000)
    assert len(t.make("open", EMAIL, SVC, "ann@example.com")) < 100
    assert all(c.isalnum() or c in "-_" for c in tok)
    long_url = "https://ex.com/?" + "&".join(f"utm_{i}=campaign_value_{i}" for i in range(40))
    long_tok = t.make("click", EMAIL, SVC, "ann@example.com", 0, long_url)
    assert len(long_tok) < len(long_url) and t.verify(long_tok, "click").url == long_url
    assert t.verify(t.make("unsubscribe", "not-a-uuid", "svc", "b@c.d"), "unsubscribe").email_id == "not-a-uuid"


def test_wrong_kind_other_key_and_garbage_are_none():
    t = Tokens(KEY)
    tok = t.make("open", EMAIL, SVC, "ann@example.com")
    assert t.verify(tok, "click") is None and t.verify(tok, "unsubscribe") is None
    assert Tokens(b"x" * 32).verify(tok, "open") is None
    for bad in ["", "x", "!!!!", "A" * 20_000, tok[:-1], tok + "A"]:
        assert t.verify(bad, "open") is None


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=7), st.text(max_size=60))
def test_any_flipped_bit_is_refused(pos, bit, url):
    t = Tokens(KEY)
    tok = t.make("click", EMAIL, SVC, "ann@example.com", 1, url)
    raw = bytearray(base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4)))
    raw[pos % len(raw)] ^= 1 << bit
    assert t.verify(base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode(), "click") is None
    assert t.verify(tok, "click").url == url
