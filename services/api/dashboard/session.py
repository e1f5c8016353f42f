"""The dashboard's cookies and CSRF tokens. The session itself is a record on the control log
(services/api/manage/sessions.py): the cookie ``pl_session`` holds its id and secret, so
signing out ends it on every API process.

The CSRF token is an HMAC of the session id under a key derived from the master key: any
process computes it, and forms of one session cannot be replayed in another."""
from __future__ import annotations

import base64
import hashlib
import hmac

from services.api.manage.sessions import ABSOLUTE

COOKIE = "pl_session"
PRE_COOKIE = "pl_signin"  # double-submit token of the sign-in forms (no session yet)
LIFETIME = int(ABSOLUTE.total_seconds())  # the cookie's max-age; the record decides the rest


def _mac(master: bytes, purpose: str, data: str) -> str:
    key = hmac.new(master, f"dashboard-{purpose}".encode(), hashlib.sha256).digest()
    mac = hmac.new(key, data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def csrf_for(master: bytes, session_id: str) -> str:
    return _mac(master, "csrf", session_id)


def csrf_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)
