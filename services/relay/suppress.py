"""The suppression rules, applied after a bounce or a complaint, whichever way it came
(the SMTP reply during delivery, or a DSN/ARF report to the inbound listener):

- a complaint suppresses at once (reason ``complaint``);
- a hard bounce whose classification says so (an address-level failure: unknown
  recipient, bad domain, disabled mailbox) suppresses at once (``hard_bounce``);
- a soft bounce suppresses when it is the third within 7 days for that recipient
  (``soft_bounce``); policy, spam, content and authentication refusals never do.

Idempotent under redelivery: nothing is saved when the recipient is already suppressed,
the saved entry's id and time derive from the bounce (so a second save is the same
record), and the soft-bounce count leaves the bounce being applied out before adding it."""
from __future__ import annotations

import logging
from services.relay.bounce_class import Classification
from shared import events as ev
from shared.control.plane import ControlPlane
from shared.store import queries
from shared.store.port import AnalyticsStore

log = logging.getLogger(__name__)
SOFT_BOUNCES_TO_SUPPRESS = 3


class Suppressor:
    def __init__(self, control: ControlPlane, store: AnalyticsStore | None, count_best_effort: bool = False):
        """``count_best_effort``: when the analytics store cannot count recent soft bounces,
        skip the soft-bounce rule this once instead of raising. The relay sets it, so that
        delivery never stalls while analytics is down; the inbound listener does not (it
        answers 451 and the reporting server sends the DSN again)."""
        self.control, self.store, self.count_best_effort = control, store, count_best_effort

    def reason(self, event: ev.Event, classification: Classification | None) -> str | None:
        """The suppression reason an event calls for at once, or ``"soft?"`` when it depends
        on the recent soft bounces, or None."""
        if isinstance(event, ev.Complained):
            return "complaint"
        if not isinstance(event, ev.Bounced) or classification is None:
            return None
        if classification.suppress:
            return "hard_bounce"
        return "soft?" if classification.bounce_type == "soft" else None

    async def apply(self, event: ev.Bounced | ev.Complained, classification: Classification | None = None,
                    detail: str | None = None) -> ev.SuppressionSaved | None:
        """Suppress ``event.recipient`` if the rules say so; returns the entry saved, if any.
        Call it once the event itself is durable. Raises what the control log's append
        raises (the caller's message is then redelivered and this runs again)."""
        rcpt = (event.recipient or "").lower()
        reason = self.reason(event, classification)
        if not rcpt or reason is None or event.service_id is None \
                or self.control.state.suppression(event.service_id, rcpt):
            return None
        if reason == "soft?":
            if await self.soft_bounces_before(event) + 1 < SOFT_BOUNCES_TO_SUPPRESS:
                return None
            reason = "soft_bounce"
        detail = detail or getattr(event, "smtp_reply", None)
        entry = ev.SuppressionSaved(
            id=ev.derived_id("suppression", event.id), workspace_id=event.workspace_id, service_id=event.service_id,
            email=rcpt, reason=reason, detail=detail[:1000] if detail else None, source_email_id=event.email_id,
            created_at=event.time, time=event.time)
        await self.control.save(entry)
        # the address stays out of the logs: the entry is found by service and source email id
        log.info("suppressed a recipient of email %s (service %s): %s", event.email_id, event.service_id, reason)
        return entry

    async def soft_bounces_before(self, event: ev.Bounced | ev.Complained) -> int:
        """Soft bounces of this recipient within the window, this one left out. Without an
        analytics store (a relay started without one) the count is 0: one soft bounce never
        suppresses by itself."""
        if self.store is None or event.service_id is None or event.recipient is None:
            return 0
        try:
            return await queries.recent_soft_bounces(self.store, event.service_id, event.recipient, event.id)
        except Exception:
            if not self.count_best_effort:
                raise
            log.warning("cannot count soft bounces for email %s now; the soft-bounce rule waits for the next one",
                        event.email_id, exc_info=True)
            return 0
