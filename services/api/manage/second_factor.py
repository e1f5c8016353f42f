"""Turning a user's TOTP second factor on and off (RFC 6238; services/api/manage/credentials.py).

On: ``begin`` stores a new secret as *pending* (sealed, on the user's record, so the
confirmation may land on any process) and the user adds it to an authenticator app;
``confirm`` with a valid code makes it the user's second factor and returns ten recovery
codes, shown once (only their hashes are kept). Off: ``disable`` with the user's password."""
from __future__ import annotations

from services.api.access import Actor
from services.api.context import ApiContext
from services.api.manage import changed, credentials
from services.api.refusal import Refusal
from shared import events as ev
from shared.crypto import unseal


def _user(rt: ApiContext, actor: Actor) -> ev.UserSaved | Refusal:
    user = rt.control.state.user(actor.workspace_id, actor.user_id) if actor.user_id else None
    if user is None:
        return Refusal(400, "a second factor is for users; the admin token has none")
    return user


def pending_uri(rt: ApiContext, user: ev.UserSaved) -> dict[str, str] | None:
    """The pending secret and its ``otpauth://`` URI, to show while TOTP is being turned on."""
    if user.totp_pending_sealed is None:
        return None
    secret = unseal(rt.settings.master_key, user.totp_pending_sealed, f"totp:{user.user_id}").decode()
    return {"secret": secret, "uri": credentials.totp_uri(user, secret)}


async def begin(rt: ApiContext, actor: Actor) -> ev.UserSaved | Refusal:
    user = _user(rt, actor)
    if isinstance(user, Refusal):
        return user
    if user.oidc_subject is not None and user.password_hash is None:
        return Refusal(400, "you sign in with single sign-on: its provider asks for your second factor")
    sealed = credentials.seal_totp(rt.settings.master_key, user, credentials.new_totp_secret())
    return await changed(rt, user, totp_pending_sealed=sealed)


async def confirm(rt: ApiContext, actor: Actor, code: str) -> list[str] | Refusal:
    """The recovery codes, once the pending secret accepted ``code``."""
    user = _user(rt, actor)
    if isinstance(user, Refusal):
        return user
    if user.totp_pending_sealed is None:
        return Refusal(400, "start turning on the authenticator app first", field="code")
    step = credentials.totp_step(rt.settings.master_key, user.totp_pending_sealed, user, code, 0)
    if step is None:
        return Refusal(400, "that code is not valid: check the app's clock and try the next code", field="code")
    codes = credentials.new_recovery_codes()
    outcome = await changed(rt, user, totp_sealed=user.totp_pending_sealed, totp_pending_sealed=None,
                            totp_last_step=step, recovery_hashes=[credentials.recovery_hash(c) for c in codes])
    return outcome if isinstance(outcome, Refusal) else codes


async def disable(rt: ApiContext, actor: Actor, password: str) -> ev.UserSaved | Refusal:
    user = _user(rt, actor)
    if isinstance(user, Refusal):
        return user
    if not await credentials.password_ok(user.password_hash, password):
        return Refusal(400, "that password is not valid", field="password")
    return await changed(rt, user, totp_sealed=None, totp_pending_sealed=None, recovery_hashes=[])
