"""Resend's request shapes and error names, at the schema and error-body level (the SDKs
themselves run against a real process in tests/sdk)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from services.api.auth import MISSING
from services.api.errors import error_body, http_error, name_of
from services.api.idempotency.gate import IN_PROGRESS, OTHER_BODY
from services.api.idempotency.keys import check_key
from services.api.refusal import Refusal
from services.api.sending import rate_limited
from shared.quota import Decision
from services.api.schemas import SendEmail
from services.api.validation_errors import first_error
from services.api.when import parse_natural

BASE = {"from": "a@acme.test", "to": "b@example.com", "subject": "s", "text": "t"}
NOW = datetime(2026, 12, 4, 17, 30, tzinfo=timezone.utc)


def error_of(extra: dict) -> str:
    with pytest.raises(ValidationError) as exc:
        SendEmail.model_validate({**BASE, **extra})
    return first_error(exc.value.errors())


@pytest.mark.parametrize("refusal,name", [
    (Refusal(400, "bad", "to"), "validation_error"), (Refusal(401, "missing API key", code=MISSING), "missing_api_key"),
    (Refusal(401, "invalid API key"), "invalid_api_key"), (Refusal(404, "email x not found"), "not_found"),
    (OTHER_BODY, "invalid_idempotent_request"), (IN_PROGRESS, "concurrent_idempotent_requests"),
    (check_key("k" * 256), "invalid_idempotency_key"),
    (rate_limited(Decision(False, 600, 0, 3, 3, "minute")), "rate_limit_exceeded"),
    (rate_limited(Decision(False, 10000, 0, 3, 3, "day")), "daily_quota_exceeded"),
    (rate_limited(Decision(False, 50, 0, 3, 3, "sandbox day")), "daily_quota_exceeded"),
    (Refusal(500, "internal error; safe to retry"), "application_error"), (Refusal(502, "x"), "application_error"),
])
def test_error_body_has_both_contracts(refusal, name):
    """The machine code is given where the refusal is made (never read from its text), and
    the HTTP edge puts it in the body next to the message."""
    assert refusal.name == name and name_of(http_error(refusal)) == name
    assert error_body(refusal.status, refusal.text, refusal.name) == {
        "error": refusal.text, "message": refusal.text, "name": name, "statusCode": refusal.status}


def test_tags_as_name_value_objects_become_strings():
    body = SendEmail.model_validate({**BASE, "tags": [{"name": "category", "value": "welcome"}, {"name": "vip"}, "plain"]})
    assert body.tags == ["category:welcome", "vip", "plain"]
    assert error_of({"tags": [{"name": "category", "valu": "x"}]}) == (
        "tags: item 0: unknown field 'valu' (a tag object is {name, value})")
    assert error_of({"tags": ["ok", {"value": "x"}]}) == "tags: item 1: name must be a non-empty string"
    assert error_of({"tags": [{"name": "has space", "value": "x"}]}).startswith("tags: 'has space:x'")


def test_attachment_content_alias_bytes_list_and_path():
    body = SendEmail.model_validate({**BASE, "attachments": [{"filename": "a.pdf", "content": "JVBERg=="},
                                                             {"filename": "b.txt", "content": list(b"hi")}]})
    assert [(a.content_base64, a.content_type) for a in body.attachments] == [
        ("JVBERg==", "application/pdf"), ("aGk=", "text/plain")]
    seed = SendEmail.model_validate({**BASE, "attachments": [{"filename": "a.pdf", "content_base64": "JVBERg=="}]})
    assert seed.attachments[0].content_type == "application/octet-stream"  # the seed's shape keeps its default
    remote = SendEmail.model_validate({**BASE, "attachments": [{"path": "https://example.com/a.pdf"}]})
    assert (remote.attachments[0].path, remote.attachments[0].filename) == ("https://example.com/a.pdf", "a.pdf")
    assert error_of({"attachments": [{"filename": "a.pdf"}]}).startswith("attachments[0]: content: field required")
    assert "content" in error_of({"attachments": [{"filename": "a.pdf", "content": [1, 300]}]})


@pytest.mark.parametrize("text,expected", [
    ("in 1 min", datetime(2026, 12, 4, 17, 31, tzinfo=timezone.utc)),
    ("In 30 seconds", datetime(2026, 12, 4, 17, 30, 30, tzinfo=timezone.utc)),
    ("in 2 hours", datetime(2026, 12, 4, 19, 30, tzinfo=timezone.utc)),
    ("in 3 days", datetime(2026, 12, 7, 17, 30, tzinfo=timezone.utc)),
    ("tomorrow at 9am", datetime(2026, 12, 5, 9, 0, tzinfo=timezone.utc)),
    ("tomorrow at 9:30 pm", datetime(2026, 12, 5, 21, 30, tzinfo=timezone.utc)),
    ("today at 15:00", datetime(2026, 12, 4, 15, 0, tzinfo=timezone.utc)),
    ("now", NOW),
    ("2026-12-05T10:00:00Z", None), ("next friday", None), ("in 2 fortnights", None),
])
def test_natural_language_times(text, expected):
    assert parse_natural(text, NOW) == expected


def test_scheduled_at_accepts_natural_language_and_names_the_field_otherwise():
    assert SendEmail.model_validate({**BASE, "scheduled_at": "in 5 min"}).scheduled_at > datetime.now(timezone.utc)
    assert error_of({"scheduled_at": "next blue moon"}).startswith("scheduled_at:")
    assert error_of({"scheduled_at": "tomorrow at 13pm"}).startswith("scheduled_at:")
    assert error_of({"scheduled_at": "in 40 days"}) == "scheduled_at: at most 30 days ahead"
    assert error_of({"scheduled_at": "in 999999999 weeks"}).startswith("scheduled_at:")  # past any date: a 400
