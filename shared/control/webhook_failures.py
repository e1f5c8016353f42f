"""An endpoint's messages failed in a row (``WebhookSaved.consecutive_failures``), one count
for every process that delivers to it.

On Kafka an endpoint's deliveries are spread over the webhooks pods (its events are keyed by
email id), so the count lives on the endpoint itself and is written through the control plane:
one more when a message has used every retry, 0 after a success (written only when it is not 0
already) and when the endpoint is enabled again. A change refused because another process
counted at the same moment (409) is made again on the count that process wrote. A count that
reached ``AUTO_DISABLE_AFTER`` is not raised further (the endpoint is being disabled): so N
processes failing together need at most ``AUTO_DISABLE_AFTER`` + 1 rounds, whatever N, and
no count below the limit is lost.

Counting is bookkeeping beside an attempt whose outcome must be recorded whatever happens to
it: ``count`` never raises (an unreachable log, an endpoint deleted meanwhile: it answers 0)."""
from __future__ import annotations

import logging

from shared.control.errors import ChangeRefused, ControlBehind
from shared.control.plane import ControlPlane

log = logging.getLogger(__name__)
AUTO_DISABLE_AFTER = 3  # messages failed in a row (every retry used) before an endpoint is disabled
TRIES = AUTO_DISABLE_AFTER + 2  # rounds of 409s a count goes through (see the module docstring)


async def count(control: ControlPlane, webhook_id: str, failed: bool) -> int:
    """The endpoint's count after one more failed message (``failed``) or a success / re-enable.
    A success that finds the count at 0 here first reads the control log to its end (another
    process may have counted a failure this one has not applied yet): at most one end-offsets
    read per success, as every API request makes."""
    caught_up = failed
    for _ in range(TRIES):
        current = control.state.webhooks.get(webhook_id)
        if current is None or current.deleted:
            return 0
        had = current.consecutive_failures
        n = min(had + 1, AUTO_DISABLE_AFTER) if failed else 0
        if n == had and not caught_up:
            caught_up = True
            try:
                await control.catch_up()
            except Exception:
                log.warning("webhook %s: a success could not reset its failures in a row (the control log "
                            "is unreadable)", webhook_id)
                return 0
            continue
        if n == had:
            return n
        try:
            await control.change(current, consecutive_failures=n)
            return n
        except ControlBehind:  # written, not read back yet
            log.warning("webhook %s: its failures in a row were counted but not read back", webhook_id)
            return n
        except ChangeRefused as exc:
            if exc.status == 404:
                return 0
        except Exception:
            log.exception("webhook %s: its failures in a row could not be counted", webhook_id)
            return 0
    log.warning("webhook %s: its failures in a row could not be counted (%d tries)", webhook_id, TRIES)
    return 0
