"""Dashboard sessions and CSRF tokens: stateless, signed, valid on every API process.

The session cookie is ``<payload>.<mac>``: the payload names the workspace, the expiry, a
nonce and a prefix of the admin token's hash, and the MAC is HMAC-SHA256 under a key derived
from the master key. Any process with the same master key checks it, so sessions work across
workers and replicas without shared state; re-keying the workspace (a new admin token) ends
its sessions because the token-hash prefix no longer matches. The CSRF token is an HMAC of
the session nonce, so forms of one session cannot be replayed in another."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

COOKIE = "pl_session"
PRE_COOKIE = "pl_signin"  # double-submit token of the sign-in form (no session yet)
LIFETIME = 12 * 3600


@dataclass(frozen=True)
class Session:
    workspace_id: str
    expires: int
    nonce: str
    csrf: str


def _key(master: bytes, purpose: str) -> bytes:
    return hmac.new(master, f"dashboard-{purpose}".encode(), hashlib.sha256).digest()


def _mac(master: bytes, purpose: str, data: str) -> str:
    mac = hmac.new(_key(master, purpose), data.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def issue(master: bytes, workspace_id: str, token_hash: str, now: float | None = None) -> str:
    """A new session cookie value for ``workspace_id`` (signed in with the token of ``token_hash``)."""
    payload = json.dumps({"w": workspace_id, "e": int((now or time.time()) + LIFETIME),
                          "n": secrets.token_urlsafe(16), "t": token_hash[:16]}, separators=(",", ":"))
    data = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{data}.{_mac(master, 'session', data)}"


def read(master: bytes, value: str | None, token_hash_of: Callable[[str], str | None],
         now: float | None = None) -> Session | None:
    """The session in cookie ``value``, or None if it is missing, forged, expired or its
    workspace's admin token changed since. ``token_hash_of(workspace_id)`` → current hash or None."""
    if not value or value.count(".") != 1:
        return None
    data, mac = value.split(".")
    if not hmac.compare_digest(_mac(master, "session", data), mac):
        return None
    try:
        p = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
        wid, expires, nonce, token_prefix = str(p["w"]), int(p["e"]), str(p["n"]), str(p["t"])
    except (ValueError, KeyError, TypeError):
        return None
    current = token_hash_of(wid)
    if expires < (now or time.time()) or not current or not hmac.compare_digest(current[:16], token_prefix):
        return None
    return Session(wid, expires, nonce, csrf_for(master, nonce))


def csrf_for(master: bytes, nonce: str) -> str:
    return _mac(master, "csrf", nonce)


def csrf_ok(expected: str, given: object) -> bool:
    return isinstance(given, str) and bool(given) and hmac.compare_digest(expected, given)
