"""Resend's request shapes and error names, at the schema and error-body level (the SDKs
themselves run against a real process in tests/sdk)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from services.api.errors import error_body
from services.api.schemas import SendEmail
from services.api.validation_errors import first_error
from services.api.when import parse_natural

BASE = {"from": "a@acme.test", "to": "b@example.com", "subject": "s", "text": "t"}
NOW = datetime(2026, 12, 4, 17, 30, tzinfo=timezone.utc)


def error_of(extra: dict) -> str:
    with pytest.raises(ValidationError) as exc:
        SendEmail.model_validate({**BASE, **extra})
    return first_error(exc.value.errors())


@pytest.mark.parametrize("status,message,name", [
    (400, "to: bad", "validation_error"), (401, "missing API key: send Api-Key", "missing_api_key"),
    (401, "invalid API key", "invalid_api_key"), (404, "email x not found", "not_found"),
    (409, "Idempotency-Key: already used with a different request body", "invalid_idempotent_request"),
    (429, "rate limit reached (minute: 600); retry in 3 s", "rate_limit_exceeded"),
    (429, "rate limit reached (day: 10000); retry in 3 s", "daily_quota_exceeded"),
    (429, "rate limit reached (sandbox day: 50); retry in 3 s", "daily_quota_exceeded"),
    (500, "internal error; safe to retry", "application_error"), (502, "x", "application_error"),
])
def test_error_body_has_both_contracts(status, message, name):
    assert error_body(status, message) == {"error": message, "message": message, "name": name, "statusCode": status}


def test_tags_as_name_value_objects_become_strings():
    body = SendEmail.model_validate({**BASE, "tags": [{"name": "category", "value": "welcome"}, {"name": "vip"}, "plain"]})
    assert body.tags == ["category:welcome", "vip", "plain"]
    assert error_of({"tags": [{"name": "category", "valu": "x"}]}) == (
        "tags: item 0: unknown field 'valu' (a tag object is {name, value})")
    assert error_of({"tags": ["ok", {"value": "x"}]}) == "tags: item 1: name must be a non-empty string"
    assert error_of({"tags": [{"name": "has space", "value": "x"}]}).startswith("tags: 'has space:x'")


def test_attachment_content_alias_bytes_list_and_refused_path():
    body = SendEmail.model_validate({**BASE, "attachments": [{"filename": "a.pdf", "content": "JVBERg=="},
                                                             {"filename": "b.txt", "content": list(b"hi")}]})
    assert [(a.content_base64, a.content_type) for a in body.attachments] == [
        ("JVBERg==", "application/pdf"), ("aGk=", "text/plain")]
    seed = SendEmail.model_validate({**BASE, "attachments": [{"filename": "a.pdf", "content_base64": "JVBERg=="}]})
    assert seed.attachments[0].content_type == "application/octet-stream"  # the seed's shape keeps its default
    assert error_of({"attachments": [{"filename": "a.pdf", "path": "https://example.com/a.pdf"}]}).startswith(
        "attachments[0]: path: remote attachments are not fetched")
    assert error_of({"attachments": [{"filename": "a.pdf"}]}) == "attachments[0]: content_base64: field required"
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
