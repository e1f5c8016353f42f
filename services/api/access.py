"""Who may do what (docs/people-and-access.md): the one place that decides, for the dashboard and the
management API alike.

Roles, most powerful first: ``owner``, ``admin``, ``developer`` (everything but people and
workspace settings), ``viewer`` (read only). A request needs one permission:

- ``read``   — every page and every GET of the management API: all roles;
- ``write``  — any change to services, domains, keys, webhooks, suppressions, sandbox
  recipients, sends: owner, admin, developer;
- ``people`` — invite users, change roles, remove users: owner, admin (an admin can neither
  grant ``owner`` nor change or remove an owner);
- ``self``   — one's own account: sessions, sign-out, TOTP, personal API tokens: all roles;
- ``installation`` — what holds for every workspace of the installation (shaping per
  provider, source IP pools; docs/delivery.md): owner, admin — reading too — of the default
  workspace only (the operator's: the one `postline` creates at first start). Another
  workspace's people neither see the installation's last replies (other tenants' addresses)
  nor change what every tenant sends under.

The workspace admin token acts as an ``owner`` (bootstrap and automation).

Mail that carries a credential (``CREDENTIAL_MARK``) is read in the dev inbox only with the
permission of the operation that sends it: a ``read`` permission would otherwise be enough to
take an invitation's link and become the invited admin (docs/security.md)."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from email import policy
from email.parser import BytesHeaderParser
from typing import Literal

from services.api.refusal import Refusal
from shared import events as ev
from shared.devinbox import DevInbox, Mail
from shared.runtime import DEFAULT_WORKSPACE

Permission = Literal["read", "write", "people", "self", "installation"]
ALLOWED: dict[Permission, frozenset[str]] = {
    "read": frozenset(ev.ROLES),
    "write": frozenset({"owner", "admin", "developer"}),
    "people": frozenset({"owner", "admin"}),
    "self": frozenset(ev.ROLES),
    "installation": frozenset({"owner", "admin"}),
}
FORBIDDEN = "forbidden"  # the refusal's machine code
CREDENTIAL_MARK = "X-Postline-Credential"
"""The header on the mail Postline sends with a credential in it; its value is the kind."""
CREDENTIAL_MAIL: dict[str, Permission] = {
    "invitation": "people",                # its link makes the reader a member with the invited role
    "sandbox-verification": "write",       # its link lets test mail reach an address, as adding one does
}
"""Who may read mail of each kind: whoever may send it. A kind not listed needs ``people``."""


@dataclass(frozen=True)
class Actor:
    """Who makes a request: the workspace admin token, or a user (through a dashboard session
    or a personal API token). ``request.state.actor`` holds it (the audit log names it)."""

    workspace_id: str
    role: ev.Role
    user: ev.UserSaved | None = None
    session_id: str | None = None
    token_id: str | None = None

    @property
    def name(self) -> str:
        """``admin_token`` or ``user:<email>``: how logs and the audit trail name the actor."""
        return f"user:{self.user.email}" if self.user else "admin_token"

    @property
    def user_id(self) -> str | None:
        return self.user.user_id if self.user else None


def permission_of_method(method: str) -> Permission:
    """The default permission of a request: reading (GET, HEAD) or changing (anything else)."""
    return "read" if method.upper() in ("GET", "HEAD", "OPTIONS") else "write"


def refusal(actor: Actor, permission: Permission) -> Refusal | None:
    """None when ``actor`` may act with ``permission``, else a 403 naming the role."""
    if permission == "installation" and actor.workspace_id != DEFAULT_WORKSPACE:
        return Refusal(403, "the installation's delivery settings are the operator's: the owners and admins of the "
                            "default workspace see and change them", code=FORBIDDEN)
    if actor.role in ALLOWED[permission]:
        return None
    what = {"read": "read", "write": "make changes", "people": "manage people", "self": "do this",
            "installation": "see or change the installation's delivery settings"}[permission]
    return Refusal(403, f"your role ({actor.role}) may not {what} in this workspace", code=FORBIDDEN)


def role_change_refusal(actor: Actor, target_role: str | None, new_role: str | None) -> Refusal | None:
    """Granting or touching ``owner`` is for owners only (an admin cannot promote itself or
    remove the owner); None when allowed."""
    if actor.role != "owner" and "owner" in (target_role, new_role):
        return Refusal(403, "only an owner may grant the owner role or change an owner", code=FORBIDDEN)
    return None


def credential_kind(raw: bytes) -> str | None:
    """The kind of credential a captured mail carries (its ``CREDENTIAL_MARK``), None for
    ordinary mail. Only the top-level header is read, not the body."""
    mark = BytesHeaderParser(policy=policy.default).parsebytes(raw)[CREDENTIAL_MARK]
    return None if mark is None else str(mark).strip()


async def readable_mail(actor: Actor, inbox: DevInbox, mails: list[Mail]) -> list[Mail]:
    """Those of ``mails`` (captured mail of ``actor``'s workspace) that ``actor`` may read:
    mail carrying a credential only with the permission of the operation that sends it
    (``CREDENTIAL_MAIL``). A mail gone from the inbox meanwhile is left out. Reading the
    mails' headers (a blob each) runs on a worker thread, not the event loop."""
    needed: set[Permission] = {*CREDENTIAL_MAIL.values(), "people"}
    if all(refusal(actor, p) is None for p in needed):
        return mails  # every kind is readable: no mail needs to be opened
    return await asyncio.to_thread(_readable, actor, inbox, mails)


def _readable(actor: Actor, inbox: DevInbox, mails: list[Mail]) -> list[Mail]:
    out = []
    for m in mails:
        raw = inbox.raw(m["id"])
        if raw is None:
            continue
        kind = credential_kind(raw)
        if kind is None or refusal(actor, CREDENTIAL_MAIL.get(kind, "people")) is None:
            out.append(m)
    return out
