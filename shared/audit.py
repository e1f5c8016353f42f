"""The audit log (docs/security.md, "Audit log"): who changed what, when, from where.

Every control change made on behalf of someone — an admin token, an API key, a dashboard
session (a user, once there are users), an operator's command (services/cli.py) — is described by an ``AuditEntry`` appended to the
control topic by ``ControlPlane.save``/``change`` (shared/control/plane.py), under a key of
its own (``audit:<id>``): compaction keeps the latest record per key, so it never removes an
entry, and nothing rewrites one. Changes nobody made (a bounce adding a suppression, the
webhook runner disabling an endpoint) have no actor and no entry: they are events of their own.

The actor, source address and request id come from ``acting``: the HTTP edge opens a
``Context`` per request (services/api/actors.py) and the auth dependencies fill in the
actor. Secrets never reach an entry: ``redact`` replaces every secret-bearing field (hashes,
sealed keys and secrets, passwords, TOTP seeds) by ``"[redacted]"`` — before and after alike,
so an entry still says that a secret changed, never what it is.

Reads: each process keeps the newest entries of each workspace (shared/control/audit_index.py,
in the control state it replays anyway), for ``GET /api/email/audit-log`` and the dashboard
page; older entries stay on the log."""
from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from shared import events as ev
from shared.control.state import entity_key

REDACTED = "[redacted]"
ID_FIELDS = {"api_key": "key_id", "sandbox_recipient": "recipient_id", "user_token": "token_id"}  # else "<type>_id"
# Dashboard sessions are bookkeeping (a session's last activity moves on every page): the
# Account page lists them; signing in and out are not control changes of the workspace.
UNAUDITED = frozenset({"session"})
# a field whose name holds one of these carries a secret (or a hash or sealed form of one)
SECRET_MARKS = ("hash", "secret", "sealed", "private", "password", "totp", "recovery")


@dataclass
class Context:
    """What one request knows about who is acting; the actor is set once authenticated."""
    source: str | None = None
    request_id: str | None = None
    actor_type: str | None = None  # "admin_token", "api_key", "user", "cli"
    actor_id: str | None = None


_current: contextvars.ContextVar[Context | None] = contextvars.ContextVar("postline_audit", default=None)


@contextmanager
def acting(context: Context) -> Iterator[Context]:
    """Make ``context`` the current one for the block (one request)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def current() -> Context | None:
    """The current request's context when an actor is set, else None (no entry is written)."""
    ctx = _current.get()
    return ctx if ctx is not None and ctx.actor_type is not None else None


def set_actor(actor_type: str, actor_id: str) -> None:
    """Name the actor of the current request (a no-op outside one)."""
    ctx = _current.get()
    if ctx is not None:
        ctx.actor_type, ctx.actor_id = actor_type, actor_id


def is_secret(name: str) -> bool:
    return any(mark in name.lower() for mark in SECRET_MARKS)


def redact(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every secret-bearing field replaced by ``REDACTED`` (None stays None),
    in nested objects too (a domain's pending DKIM key set holds sealed private keys)."""
    return {k: (REDACTED if is_secret(k) and v is not None else redact(v) if isinstance(v, dict) else v)
            for k, v in state.items()}


def _state(entity: ev.ControlRecord) -> dict[str, Any]:
    """The entity's fields as an entry shows them: no record metadata, no ``deleted`` flag (the
    action says it), no field repeating the target's id; secrets redacted."""
    kind, _ = target_of(entity)
    skip = set(ev.CONTROL_META) | {"type", "workspace_id", "deleted", ID_FIELDS.get(kind, f"{kind}_id")}
    if kind == "workspace":
        skip.add("service_id")  # a workspace belongs to no service
    return redact(entity.model_dump(mode="json", exclude=skip))


def target_of(entity: ev.ControlRecord) -> tuple[str, str]:
    """``(entity type, id)``: ``("service", "1f…")``; a suppression is named by its address."""
    kind, _, ident = entity_key(entity).partition(":")
    return kind, ident


def entry_for(before: ev.ControlRecord | None, after: ev.ControlRecord, ctx: Context,
              only: list[str] | None = None) -> ev.AuditEntry | None:
    """The entry describing ``before`` → ``after`` made in ``ctx``; None when nothing changed
    (an anchor, a re-save of the same state). Creates show the whole new state, deletes the
    whole old one, updates the fields that changed (of ``only``, the fields a change set,
    when given: another request's change merged meanwhile is not this actor's)."""
    kind, ident = target_of(after)
    if kind in UNAUDITED:
        return None
    old = _state(before) if before is not None and not before.deleted else None
    new = _state(after) if not after.deleted else None
    if old is None and new is None:
        return None
    if old is None:
        action, shown_before, shown_after = "created", None, new
    elif new is None:
        action, shown_before, shown_after = "deleted", old, None
    else:
        keys = [k for k in new if (only is None or k in only)
                and (old.get(k) != new[k] or (is_secret(k) and _raw(before, k) != _raw(after, k)))]
        if not keys:
            return None
        action, shown_before, shown_after = "updated", {k: old.get(k) for k in keys}, {k: new[k] for k in keys}
    return ev.AuditEntry(workspace_id=after.workspace_id, service_id=after.service_id,
                         actor_type=ctx.actor_type or "unknown", actor_id=ctx.actor_id or "", action=f"{kind}.{action}",
                         target_type=kind, target_id=ident, before=shown_before, after=shown_after,
                         source=ctx.source, request_id=ctx.request_id)


def _raw(entity: ev.ControlRecord | None, name: str) -> object:
    return getattr(entity, name, None)
