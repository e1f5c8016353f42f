"""``postline rotate-secret-key``: re-seal every DKIM private key, webhook secret and TOTP secret from
the previous master key to the current one, as new control events (offline: stop the
roles first, run it once, start them with the new key).

The previous key comes from ``POSTLINE_PREVIOUS_SECRET_KEY`` or, when that is unset, from
the key file an embedded install generated into the data dir; the new key is
``POSTLINE_SECRET_KEY``. Keys are never command-line arguments (they would show in the
process list). Running it twice is harmless: what already opens with the new key is left
as it is."""
from __future__ import annotations

from cryptography.exceptions import InvalidTag

from shared import events as ev
from shared.control.plane import ControlPlane
from shared.crypto import seal, unseal


def _reseal(old: bytes, new: bytes, sealed: str | None, context: str) -> str | None:
    """``sealed`` under ``new``; ``None`` when it needs no change (absent, or already new)."""
    if sealed is None:
        return None
    try:
        unseal(new, sealed, context)
        return None
    except InvalidTag:
        return seal(new, unseal(old, sealed, context), context)  # InvalidTag here: the old key is wrong


async def rotate(control: ControlPlane, old: bytes, new: bytes) -> dict[str, int]:
    """Append re-sealed copies of the domains, webhooks and users (TOTP) of ``control`` (a started
    ``ControlPlane``); returns how many of each were re-sealed. Raises ``InvalidTag`` when
    a secret opens with neither key."""
    done = {"domains": 0, "webhooks": 0, "users": 0}
    for dom in list(control.state.domains.values()):
        changes: dict = {f: v for f in ("rsa_private_sealed", "ed_private_sealed")
                         if (v := _reseal(old, new, getattr(dom, f), dom.domain_id)) is not None}
        pending = dict(dom.pending_dkim or {})  # a DKIM rotation's next key set (services/api/dkim_rotation.py)
        resealed = {f: v for f in ("rsa_private_sealed", "ed_private_sealed")
                    if (v := _reseal(old, new, pending.get(f), dom.domain_id)) is not None}
        if resealed:
            changes["pending_dkim"] = {**pending, **resealed}
        if changes:
            await control.change(dom, **changes)
            done["domains"] += 1
    for wh in list(control.state.webhooks.values()):
        changes = {f: v for f in ("secret_sealed", "previous_secret_sealed")
                   if (v := _reseal(old, new, getattr(wh, f), wh.webhook_id)) is not None}
        if changes:
            await control.change(wh, **changes)
            done["webhooks"] += 1
    for user in list(control.state.users.values()):  # TOTP secrets (services/api/manage/credentials.py)
        changes = {f: v for f in ("totp_sealed", "totp_pending_sealed")
                   if (v := _reseal(old, new, getattr(user, f), f"totp:{user.user_id}")) is not None}
        if changes:
            await control.change(user, **changes)
            done["users"] += 1
    return done
