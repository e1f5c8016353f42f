"""Never unsigned by accident: the checks a request passes before its mail may leave.

1. ``caught_up``: the request carries the control-log position the API decided on; a relay
   whose control state has not read that far yet (a domain verified a moment ago, a key
   just rotated) waits for it, up to ``POSTLINE_CONTROL_WAIT_TIMEOUT`` seconds.
2. ``signing_ready``: a message the API decided to send from a customer's domain goes out
   only signed by that domain. If the relay still does not know the domain as verified with
   both keys (it was deleted or unverified since, or the relay is still behind), the
   message is deferred like a 4xx: retried through the delay topics and, after the queue
   lifetime, failed. It is never sent unsigned nor from the sandbox bounce domain.

Messages without a sending domain (sandbox, sandbox fallback) are not held: they go out
from the platform's sender, as before."""
from __future__ import annotations

import asyncio
import time

from services.relay.outcome import DeliveryResult
from shared import events as ev
from shared import metrics
from shared.control.state import ControlState

POLL_SECONDS = 0.02  # the control follower applies records in batches; a short poll is cheap


async def caught_up(state: ControlState, position: dict[int, int], timeout: float) -> bool:
    """Wait until ``state`` has read the control log as far as ``position`` (per partition);
    False if it has not after ``timeout`` seconds. Returns at once when already there."""
    if state.reached(position):
        return True
    metrics.RELAY_CONTROL_WAITS.inc()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_SECONDS)
        if state.reached(position):
            return True
    return False


def usable(domain: ev.DomainSaved | None) -> bool:
    """A verified domain with both DKIM keys (RSA and Ed25519) to sign with."""
    return bool(domain and domain.verified and domain.rsa_private_sealed and domain.ed_private_sealed)


async def hold(state: ControlState, req: ev.SendRequested, timeout: float) -> DeliveryResult | None:
    """None when ``req`` may be built and sent now; else the ``deferred`` outcome to record
    for every pending recipient (the retry path brings the message back later)."""
    if not req.sending_domain:
        return None
    reached = await caught_up(state, req.control_position, timeout)
    if usable(state.verified_domain(req.service_id or "", req.sending_domain)):  # no service: never signed, deferred
        return None
    metrics.RELAY_HELD.labels("control_behind" if not reached else "no_signing_key").inc()
    why = ("this relay has not yet read the control log as far as the request"
           if not reached else "no verified DKIM key for the domain")
    return DeliveryResult("deferred", None, f"held, not sent unsigned: {why} ({req.sending_domain})")
