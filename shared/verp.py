"""VERP return paths: ``bounces+<token>@<bounce domain>``, one per (message, recipient), or
one per message for a transaction carrying several recipients.

The token is ``<email id, base32>-<recipient index>-<signature>``: the index points into the
message's to+cc+bcc list; ``a`` (``ALL``) instead of an index names the whole message (the
report's own Final-Recipient fields then say who bounced, RFC 3464); the HMAC signature stops
forged bounces from suppressing arbitrary addresses. 44 characters, inside the 64-octet
local-part limit."""
from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

PREFIX = "bounces+"
UNSUBSCRIBE_PREFIX = "unsubscribe+"  # List-Unsubscribe mailto: on the bounce domain, same token


def _sig(key: bytes, body: str) -> str:
    mac = hmac.new(key, b"verp|" + body.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:5]).decode().lower()  # 8 chars


ALL = None
"""The recipient "index" of a message-wide token (written ``a``)."""


def make_token(key: bytes, email_id: str, index: int | None) -> str:
    body = f"{base64.b32encode(uuid.UUID(email_id).bytes).decode().rstrip('=').lower()}-{'a' if index is ALL else index}"
    return f"{body}-{_sig(key, body)}"


def parse_token(key: bytes, token: str) -> tuple[str, int | None] | None:
    """``(email_id, recipient index)`` of a valid token (index ``ALL`` for a message-wide
    one), else None."""
    try:
        b32, idx, sig = token.lower().split("-")
        if not hmac.compare_digest(sig, _sig(key, f"{b32}-{idx}")):
            return None
        raw = base64.b32decode(b32.upper() + "=" * (-len(b32) % 8))
        return str(uuid.UUID(bytes=raw)), ALL if idx == "a" else int(idx)
    except (ValueError, TypeError):
        return None


def return_path(key: bytes, email_id: str, index: int | None, bounce_domain: str) -> str:
    return f"{PREFIX}{make_token(key, email_id, index)}@{bounce_domain}"


def token_of(address: str) -> str | None:
    local = address.rpartition("@")[0]
    return local[len(PREFIX):] if local.lower().startswith(PREFIX) else None


def unsubscribe_address(key: bytes, email_id: str, index: int, bounce_domain: str) -> str:
    """The ``mailto:`` List-Unsubscribe address of one (message, recipient): mail to it is
    taken by the inbound listener as an unsubscribe (56-octet local part)."""
    return f"{UNSUBSCRIBE_PREFIX}{make_token(key, email_id, index)}@{bounce_domain}"


def unsubscribe_token_of(address: str) -> str | None:
    local = address.rpartition("@")[0]
    return local[len(UNSUBSCRIBE_PREFIX):] if local.lower().startswith(UNSUBSCRIBE_PREFIX) else None
