"""Dashboard sessions, stored server-side on the control log (revocable on every process).

The cookie is ``<session_id>.<secret>``; the record keeps only the secret's SHA-256. A
session ends when it is signed out (its record deleted: an old cookie is then useless on
every API process), after ``IDLE`` without a request, ``ABSOLUTE`` after it was opened
whatever the activity (Postmark/GitHub-like: 12 h idle, 7 days at most), when its user is
removed, or — for an admin-token session — when the workspace is re-keyed.

Activity is written back at most every ``TOUCH_EVERY`` (a control record per session per
5 minutes of use, not per request). Records of ended sessions do not pile up: opening a
session deletes its owner's expired ones and keeps at most ``MAX_PER_OWNER`` live ones
(the oldest go first)."""
from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from typing import Any

from services.api.access import Actor
from services.api.context import ApiContext
from services.api.manage import deleted
from shared import events as ev
from shared.control.errors import ChangeRefused, ControlBehind
from shared.control.state import ControlState
from shared.crypto import hash_secret

IDLE = timedelta(hours=12)
ABSOLUTE = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=5)
MAX_PER_OWNER = 20
TOKEN_PREFIX_LEN = 16  # of the admin token's hash, kept in an admin-token session


def cookie_value(rec: ev.SessionSaved, secret: str) -> str:
    return f"{rec.session_id}.{secret}"


def live(rec: ev.SessionSaved, now: datetime) -> bool:
    return now < rec.expires_at and now < rec.last_seen_at + IDLE


def find(state: ControlState, cookie: str | None, now: datetime) -> ev.SessionSaved | None:
    """The live session of a cookie value; None when missing, unknown, forged or expired."""
    session_id, _, secret = (cookie or "").partition(".")
    rec = state.sessions.get(session_id) if session_id and secret else None
    if rec is None or not hmac.compare_digest(rec.secret_hash, hash_secret(secret)):
        return None
    return rec if live(rec, now) else None


def actor_of(state: ControlState, rec: ev.SessionSaved) -> Actor | None:
    """Who the session acts for now: the user's current role (a role change applies at once),
    the owner for the admin token; None when the user is gone or the workspace re-keyed."""
    ws = state.workspaces.get(rec.workspace_id)
    if ws is None:
        return None
    if rec.user_id is None:
        ok = rec.token_prefix is not None and hmac.compare_digest(ws.token_hash[:TOKEN_PREFIX_LEN], rec.token_prefix)
        return Actor(ws.workspace_id, "owner", session_id=rec.session_id) if ok else None
    user = state.user(ws.workspace_id, rec.user_id)
    if user is None or user.status != "active":
        return None
    return Actor(ws.workspace_id, user.role, user=user, session_id=rec.session_id)


async def open_session(rt: ApiContext, ws: ev.WorkspaceSaved, user: ev.UserSaved | None, method: str,
                       source: str | None, user_agent: str | None) -> str:
    """A new session for ``user`` (None: the admin token) and its cookie value (shown once)."""
    now = ev.utcnow()
    secret = secrets.token_urlsafe(32)
    rec = ev.SessionSaved(workspace_id=ws.workspace_id, session_id=ev.new_id(),
                          user_id=user.user_id if user else None,
                          token_prefix=None if user else ws.token_hash[:TOKEN_PREFIX_LEN],
                          secret_hash=hash_secret(secret), method=method, source=source,
                          user_agent=(user_agent or "")[:200] or None, created_at=now, last_seen_at=now,
                          expires_at=now + ABSOLUTE)
    await _prune(rt, ws.workspace_id, rec.user_id, now)
    await rt.control.save(rec)
    return cookie_value(rec, secret)


async def _prune(rt: ApiContext, workspace_id: str, user_id: str | None, now: datetime) -> None:
    """Delete the owner's expired sessions and the oldest live ones beyond ``MAX_PER_OWNER - 1``."""
    sessions = rt.control.state.sessions_of(workspace_id, user_id)  # newest first
    alive = [s for s in sessions if live(s, now)]
    for rec in [s for s in sessions if not live(s, now)] + alive[MAX_PER_OWNER - 1:]:
        await deleted(rt, rec)  # a refusal: deleted meanwhile, which is what was wanted


async def touch(rt: ApiContext, rec: ev.SessionSaved) -> None:
    """Record activity (the idle clock restarts) when the last record is older than
    ``TOUCH_EVERY``. A lost race or a slow log only delays it: never an error for the page."""
    now = ev.utcnow()
    if now - rec.last_seen_at < TOUCH_EVERY:
        return
    try:
        await rt.control.change(rec, last_seen_at=now)
    except (ChangeRefused, ControlBehind):
        pass


async def end(rt: ApiContext, rec: ev.SessionSaved) -> None:
    """Sign out: the cookie of ``rec`` stops working on every process."""
    await deleted(rt, rec)


async def end_all(rt: ApiContext, actor: Actor) -> int:
    """Sign out everywhere: every session of ``actor``'s user (or of the admin token)."""
    sessions = rt.control.state.sessions_of(actor.workspace_id, actor.user_id)
    for rec in sessions:
        await deleted(rt, rec)
    return len(sessions)


def owned_session(rt: ApiContext, actor: Actor, session_id: str) -> ev.SessionSaved | None:
    """``session_id`` if it is one of ``actor``'s own sessions (another's is as missing)."""
    rec = rt.control.state.sessions.get(session_id)
    if rec is None or rec.workspace_id != actor.workspace_id or rec.user_id != actor.user_id:
        return None
    return rec


def sessions_view(rt: ApiContext, actor: Actor) -> list[dict[str, Any]]:
    """``actor``'s live sessions, newest first, the current one marked."""
    now = ev.utcnow()
    return [{"id": s.session_id, "method": s.method, "source": s.source, "user_agent": s.user_agent,
             "created_at": s.created_at, "last_seen_at": s.last_seen_at, "expires_at": min(s.expires_at, s.last_seen_at + IDLE),
             "current": s.session_id == actor.session_id}
            for s in rt.control.state.sessions_of(actor.workspace_id, actor.user_id) if live(s, now)]
