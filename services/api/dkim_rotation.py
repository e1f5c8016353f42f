"""DKIM key rotation (docs/delivery.md, "DKIM rotation").

1. ``pending(master_key, d)``: a new RSA-2048 + Ed25519 set (new selectors) is generated and
   kept on the domain as ``pending_dkim``; its two TXT records join the domain's records
   (``dkim_set: pending``). Signing is unchanged.
2. ``promotion(d, checks, now)``: when a verification (the API's or the dashboard's
   "verify", or the scheduled duty below) finds both pending records in DNS, signing moves
   to them; the replaced set's public halves stay listed (``dkim_set: retiring``) for
   ``GRACE`` so mail signed before the switch still verifies, then are no longer listed
   (retired: its private halves are gone from the record at the switch already).
3. Scheduled rotation: a domain with ``dkim_rotation_days`` gets a pending set when its
   current one is that old; ``run_dkim_rotation`` (a housekeeping duty) starts those and
   checks DNS for every pending set, hourly. Several processes may run it: the control
   log refuses the second of two concurrent changes (409), which is then skipped; any other
   failure of one domain's step (the log out of reach) is logged and retried at the next
   pass, never ending the housekeeping role.

One set retires at a time: a new rotation starts only once the retiring set is no longer
listed (``rotatable``), since a second switch would replace it in the records before its
``GRACE`` is over and mail signed with it would stop verifying."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from services.api import domains as dom
from shared import events as ev
from shared.control.errors import ChangeRefused
from shared.dkim_keys import generate
from shared.runtime import Runtime

log = logging.getLogger(__name__)
GRACE = timedelta(days=7)
CHECK_INTERVAL = 3600.0


def pending(master_key: bytes, d: ev.DomainSaved) -> dict[str, Any]:
    """The change that publishes a new key set as pending."""
    return {"pending_dkim": generate(master_key, d.domain_id)}


def promotion(d: ev.DomainSaved, checks: list[dict], now: datetime) -> dict[str, Any]:
    """The change that moves signing to the pending set when ``checks`` (from
    ``domains.verify``) found both of its records; {} otherwise."""
    found = [c for c in checks if c.get("dkim_set") == "pending" and c["status"] == "found"]
    if not d.pending_dkim or len(found) != 2:
        return {}
    p = d.pending_dkim
    return {**{f: p[f] for f in ("rsa_selector", "rsa_private_sealed", "rsa_public_b64",
                                 "ed_selector", "ed_private_sealed", "ed_public_b64")},
            "pending_dkim": None, "retiring_dkim": dom.current_keys(d), "retiring_until": now + GRACE,
            "dkim_rotated_at": now}


def promoted_checks(checks: list[dict]) -> tuple[bool, list[dict]]:
    """After a promotion: whether the domain is verified with its new set, and the checks
    relabelled (the pending set is now current, the old current one retiring)."""
    relabel = {"pending": "current", "current": "retiring"}
    out = [{**c, "dkim_set": relabel.get(c["dkim_set"], c["dkim_set"])} if "dkim_set" in c else c for c in checks]
    verified = all(c["status"] == "found" for c in out if c["record"] == "SPF" or c.get("dkim_set") == "current")
    return verified, out


def rotatable(d: ev.DomainSaved, now: datetime) -> str | None:
    """Why a new pending set cannot start now (one pending, or a set still retiring), else None."""
    if d.pending_dkim:
        return "a DKIM rotation is already pending: publish its records (dkim_set: pending) and verify the domain"
    if d.retiring_dkim and d.retiring_until and d.retiring_until > now:
        return (f"the previous DKIM key set is listed as retiring until {d.retiring_until.isoformat()}, so mail "
                "signed with it still verifies: rotate again after that")
    return None


def due(d: ev.DomainSaved, now: datetime) -> bool:
    """Whether scheduled rotation should start a pending set now."""
    if not d.dkim_rotation_days or d.deleted or rotatable(d, now):
        return False
    return (d.dkim_rotated_at or d.created_at) + timedelta(days=d.dkim_rotation_days) <= now


async def rotation_pass(runtime: Runtime) -> None:
    """Start the rotations that are due, and move signing to pending sets DNS now shows."""
    now = ev.utcnow()
    for d in list(runtime.control.state.domains.values()):
        try:
            if due(d, now):
                await runtime.control.change(d, **pending(runtime.settings.master_key, d))
                log.info("DKIM rotation of %s started (every %d days)", d.domain, d.dkim_rotation_days)
            elif d.pending_dkim and not d.deleted:
                _, checks = await dom.verify(d, runtime.settings)
                if change := promotion(d, checks, now):
                    await runtime.control.change(d, **change)
                    log.info("DKIM rotation of %s: signing with the new keys", d.domain)
        except ChangeRefused:  # another process changed it meanwhile: next pass
            continue
        except Exception:  # the log out of reach, a DNS fault: this domain again at the next pass
            log.warning("DKIM rotation of %s: this pass failed; tried again in %d s", d.domain, CHECK_INTERVAL,
                        exc_info=True)


async def run_dkim_rotation(runtime: Runtime, stop: asyncio.Event, interval: float = CHECK_INTERVAL) -> None:
    """``rotation_pass`` every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        await rotation_pass(runtime)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
