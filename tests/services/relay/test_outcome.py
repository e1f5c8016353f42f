"""Outcomes as data: what a reply or a failure becomes, retry_after and connect_error."""
from services.relay.outcome import from_exception, from_reply, retry_after
from services.relay.senders.smtp_client import SmtpError


def test_a_deferral_that_names_a_delay_carries_it():
    assert from_reply(451, "4.7.1 greylisted, try again in 5 minutes").retry_after == 300
    assert from_reply(421, "4.7.0 Please retry after 90 seconds").retry_after == 90
    assert from_reply(451, "4.3.0 temporary failure").retry_after is None
    assert retry_after("retry in 2 hours") == 7200 and retry_after(None) is None


def test_connect_error_is_explicit_not_guessed_from_a_missing_code():
    refused = from_exception(SmtpError("cannot connect to 127.0.0.1:1: ConnectionRefusedError"), "mx", connecting=True)
    dropped = from_exception(SmtpError("connection lost during DATA"), "mx")
    assert refused.connect_error and refused.status == "deferred"
    assert not dropped.connect_error and dropped.smtp_code is None  # a session took place
    assert not from_reply(451, "4.3.0 later").connect_error
