"""The attachment content rule (services/api/schemas.py ``strict_base64``): its fast check
without decoding accepts and refuses exactly what ``base64.b64decode(validate=True)`` does."""
from __future__ import annotations

import base64
import binascii
import string

from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.schemas import strict_base64


def decodes(v: str) -> bool:
    try:
        base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet=string.ascii_letters + string.digits + "+/= \n\x00é-_", max_size=24)
       | st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()))
def test_the_fast_rule_is_the_decoders(v):
    assert strict_base64(v) == decodes(v)
