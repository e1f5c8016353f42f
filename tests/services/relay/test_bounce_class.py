"""The bounce classification table, run over real-world replies (tests/data/bounces/replies.json:
Gmail, Outlook/Office 365, Yahoo/AOL, iCloud, Yandex, Postfix, Exim, qmail, RBL blocks…)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.relay.bounce_class import ADDRESS_CLASSES, classify
from shared import events as ev

REPLIES = json.loads((Path(__file__).resolve().parents[2] / "data" / "bounces" / "replies.json").read_text())


def test_the_corpus_covers_every_class_and_provider():
    assert len(REPLIES) >= 25
    assert {r["class"] for r in REPLIES} >= {"unknown_recipient", "bad_domain", "mailbox_disabled", "mailbox_full",
                                             "message_too_large", "spam_block", "auth_failure", "policy", "content",
                                             "transient", "other"}
    assert {"Gmail", "Outlook.com / Hotmail", "Yahoo"} <= {r["from"] for r in REPLIES}


@pytest.mark.parametrize("case", REPLIES, ids=[f"{i}-{r['from']}-{r['code']}" for i, r in enumerate(REPLIES)])
def test_real_world_reply(case):
    got = classify(case["code"], case["reply"])
    assert (got.bounce_class, got.bounce_type, got.suppress) == (case["class"], case["type"], case["suppress"]), \
        case["reply"]


def test_dsn_status_and_diagnostic_together():
    # a generic Status with the specific code in the Diagnostic-Code: the specific one decides
    assert classify(550, "5.0.0 550 5.1.1 <a@example.org>... User unknown").bounce_class == "unknown_recipient"
    # no reply code at all (a DSN without Diagnostic-Code): the Status says permanent or not
    c = classify(None, "5.2.1")
    assert (c.bounce_type, c.bounce_class, c.suppress) == ("hard", "mailbox_disabled", True)
    c = classify(None, "4.4.7")
    assert (c.bounce_type, c.bounce_class, c.suppress) == ("soft", "transient", False)
    # nothing but the report's Action
    assert classify(None, "", permanent=False).bounce_type == "soft"
    assert classify(None, "", permanent=True).suppress


def test_numbers_that_are_not_enhanced_codes():
    # an IP address and a dotted server version hold "5.1.1"-like runs: they must not decide
    c = classify(554, "rejected: client 5.1.1.9 listed by policy")
    assert c.bounce_class == "policy" and not c.suppress
    assert classify(550, "see server 2.5.1.4 notes").bounce_class == "other"


def test_temporary_failures_never_suppress_even_when_they_name_the_address():
    c = classify(450, "4.1.1 <a@example.org>: Recipient address rejected: User unknown")
    assert (c.bounce_type, c.suppress) == ("soft", False)


def test_policy_refusals_are_hard_but_do_not_suppress():
    for reply in ("5.7.1 Relay access denied", "5.7.1 Message rejected as spam", "5.7.26 DMARC policy reject",
                  "5.6.0 Message content rejected"):
        c = classify(550, reply)
        assert c.bounce_type == "hard" and not c.suppress and c.bounce_class not in ADDRESS_CLASSES, reply


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(code=st.one_of(st.none(), st.integers(0, 999)), reply=st.one_of(st.none(), st.text(max_size=300)),
       permanent=st.one_of(st.none(), st.booleans()))
def test_total_on_any_input(code, reply, permanent):
    c = classify(code, reply, permanent)
    assert c.bounce_type in ("hard", "soft") and isinstance(c.bounce_class, str)
    assert not c.suppress or c.bounce_type == "hard"


def test_bounced_events_from_before_the_class_still_decode():
    old = (b'{"id":"e1","type":"bounced","v":1,"time":"2026-01-01T00:00:00Z","workspace_id":"w","service_id":"s",'
           b'"email_id":"m","recipient":"a@example.org","bounce_type":"hard","smtp_code":550,"smtp_reply":"x"}')
    e = ev.decode(old)
    assert e.bounce_class is None and e.bounce_type == "hard"
    new = ev.Bounced(workspace_id="w", email_id="m", recipient="a@example.org", bounce_class="unknown_recipient")
    assert ev.decode(ev.encode(new)).bounce_class == "unknown_recipient"
