"""Limits the send schema checks before the costly per-item work."""
from __future__ import annotations

import pydantic
import pytest

from services.api import schemas


def test_a_huge_recipient_list_is_refused_before_its_addresses_are_parsed(monkeypatch):
    """A body of 100,000 addresses (any caller can send one before its key is checked: the
    schema comes first, as in FastAPI) is refused at the count, not after parsing each."""
    parsed = []
    real = schemas.parse_mailbox
    monkeypatch.setattr(schemas, "parse_mailbox", lambda v: (parsed.append(v), real(v))[1])
    with pytest.raises(pydantic.ValidationError, match="at most 50"):
        schemas.SendEmail.model_validate({"from": "a@acme.test", "to": [f"u{i}@example.com" for i in range(100_000)],
                                          "subject": "s", "text": "t"})
    assert len(parsed) <= 1  # the From, at most
