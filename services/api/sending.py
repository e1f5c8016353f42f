"""The steps of a send, which the accept core (services/api/accept.py) composes:

check_active → apply_template → check_key_domain → resolve_mode → apply_sandbox_rules →
check_suppression → build_request (``prepare``), then ``admit_requests`` (limit + durable append), ``respond``, ``remember``.

Both HTTP doors use them; they differ only in what happens to an unverified sandbox recipient
(``/emails`` refuses with 400, the service door drops it as ``dropped: sandbox``)."""
from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from services.api.refusal import Refusal
from services.api.schemas import SendEmail
from services.api.template_send import apply_template
from shared import events as ev
from shared.addresses import bare, domain_of, parse_mailbox, format_mailbox
from shared.control.state import ControlState
from shared.log.deadline import LogUnavailable
from shared.log.port import LogRecordTooLarge
from shared.quota import Decision, Take

if TYPE_CHECKING:  # services/api/context.py imports RecentSends (below) at run time
    from services.api.context import ApiContext

Door = Literal["emails", "service"]


@dataclass
class Draft:
    """The message as it moves through the steps."""

    body: SendEmail
    service: ev.ServiceSaved
    mode: str = "sandbox"
    from_: str = ""
    reply_to: list[str] = field(default_factory=list)
    sending_domain: str | None = None
    recipients: list[str] = field(default_factory=list)
    dropped: list[ev.DroppedRecipient] = field(default_factory=list)
    template_id: str | None = None  # the stored template the body was rendered from


def all_recipients(body: SendEmail) -> list[str]:
    seen, out = set(), []
    for a in body.to_list + body.cc_list + body.bcc_list:
        addr = bare(a)
        if addr.lower() not in seen:
            seen.add(addr.lower())
            out.append(addr)
    return out


def check_active(svc: ev.ServiceSaved) -> Refusal | None:
    if svc.status != "active":
        return Refusal(403, "the service is disabled")
    return None


def check_key_domain(state: ControlState, key: ev.ApiKeySaved | None, from_: str) -> Refusal | None:
    """A key limited to a domain (``domain_id``) sends only From that domain: else 403 naming
    ``from`` (Resend answers a From its key may not use with 403 ``validation_error``). A key
    whose domain was removed sends nothing. None for an unlimited key, or none (admin door)."""
    if key is None or key.domain_id is None:
        return None
    d = state.domains.get(key.domain_id)
    if d is None:
        return Refusal(403, "this API key is limited to a domain that was removed; use another key", "from",
                       code="validation_error")
    if domain_of(bare(from_)) != d.domain.lower():
        return Refusal(403, f"this API key may only send from {d.domain} (got {from_!r})", "from",
                       code="validation_error")
    return None


def resolve_mode(draft: Draft, state: ControlState, sandbox_from: str) -> None:
    """Production From on a verified domain goes as is; anything else is rewritten to the
    sandbox sender, with the original From in Reply-To (unless reply_to was given)."""
    name, addr = parse_mailbox(draft.body.from_)
    verified = state.verified_domain(draft.service.service_id, domain_of(addr))
    draft.reply_to = list(draft.body.reply_to_list)
    if verified:
        draft.mode = draft.service.mode
        draft.from_ = draft.body.from_
        draft.sending_domain = verified.domain
        return
    draft.mode = "sandbox_fallback" if draft.service.mode == "production" else "sandbox"
    draft.from_ = format_mailbox(name, bare(sandbox_from))
    if not draft.reply_to:
        draft.reply_to = [draft.body.from_]


def apply_sandbox_rules(draft: Draft, state: ControlState, door: Door) -> Refusal | None:
    """Sandbox mode: unverified recipients are refused (``/emails``) or dropped (service door)."""
    rcpts = all_recipients(draft.body)
    if draft.mode == "production":
        draft.recipients = rcpts
        return None
    sid = draft.service.service_id
    unverified = [r for r in rcpts if not state.is_verified_sandbox_recipient(sid, r)]
    if unverified and door == "emails":
        return Refusal(400, f"{unverified[0]} is not a verified sandbox recipient of this service; verify it "
                            "(POST /api/email/services/{id}/sandbox-emails) or send from a verified domain", "to")
    draft.recipients = [r for r in rcpts if r not in unverified]
    draft.dropped += [ev.DroppedRecipient(recipient=r, reason="sandbox") for r in unverified]
    return None


def check_suppression(draft: Draft, state: ControlState) -> None:
    """Suppressed recipients are never sent to: they are dropped with reason ``suppressed``."""
    keep = []
    for r in draft.recipients:
        if state.suppression(draft.service.service_id, r):
            draft.dropped.append(ev.DroppedRecipient(recipient=r, reason="suppressed"))
        else:
            keep.append(r)
    draft.recipients = keep


def tracking_of(body: SendEmail, svc: ev.ServiceSaved) -> dict[str, bool]:
    """Effective tracking of one send: the body's booleans override the service defaults."""
    pick = lambda given, default: default if given is None else given  # noqa: E731
    return {"track_opens": pick(body.track_opens, svc.track_opens),
            "track_clicks": pick(body.track_clicks, svc.track_clicks),
            "list_unsubscribe": pick(body.list_unsubscribe, svc.list_unsubscribe)}


def tracking_view(req_or_record: object) -> dict[str, bool]:
    """``{opens, clicks, list_unsubscribe}`` of a request event or its stored record."""
    get = req_or_record.get if isinstance(req_or_record, dict) else lambda k, d=False: getattr(req_or_record, k, d)
    return {"opens": bool(get("track_opens", False)), "clicks": bool(get("track_clicks", False)),
            "list_unsubscribe": bool(get("list_unsubscribe", False))}


def build_request(draft: Draft, email_id: str) -> ev.SendRequested:
    b = draft.body
    return ev.SendRequested(
        workspace_id=draft.service.workspace_id, service_id=draft.service.service_id, email_id=email_id,
        mode=draft.mode, sending_domain=draft.sending_domain, to=b.to_list, cc=b.cc_list, bcc=b.bcc_list,
        reply_to=draft.reply_to, subject=b.subject, html=b.html_body, text=b.text, headers=b.headers or {},
        attachments=[ev.Attachment(**a.model_dump()) for a in b.attachments or []], tags=b.tags or [],
        recipients=draft.recipients, dropped=draft.dropped, scheduled_at=b.scheduled_at, template_id=draft.template_id,
        require_tls=draft.service.require_tls or bool(b.require_tls), **tracking_of(b, draft.service), **{"from": draft.from_})


def summary(recipients: list[str], dropped: list[tuple[str, str]], sending_domain: str | None) -> str:
    """The human-readable ``message`` of a send (also what ``GET /emails/{id}`` repeats)."""
    gone = ", ".join(f"{rcpt} ({reason})" for rcpt, reason in dropped)
    if not recipients:
        return "No email sent: " + gone
    via = f"via domain {sending_domain}" if sending_domain else "via the sandbox sender"
    text = f"Email sent to {', '.join(recipients)} {via}"
    return text + ("; dropped " + gone if dropped else "")


def respond(draft: Draft, email_id: str) -> dict[str, Any]:
    return {"id": email_id, "status": "sent" if draft.recipients else "failed", "mode": draft.mode,
            "from": draft.from_, "to": draft.body.to_list, "message": summary(draft.recipients, [(d.recipient, d.reason) for d in draft.dropped],
                                  draft.sending_domain),
            "dropped": [d.model_dump() for d in draft.dropped],
            "tracking": tracking_view(tracking_of(draft.body, draft.service))}


class RecentSends:
    """Records this API process accepted, so ``GET /emails/{id}`` answers at once after the
    POST, before analytics has loaded the message (bounded, oldest forgotten first).

    Each record is a small summary (``shared.events.message_summary``) and the
    send's response, kept as one JSON string: strings are not walked by Python's garbage
    collector, so 20,000 remembered sends add nothing to its pauses. ``get`` returns
    ``(summary, response)`` or ``None``."""

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()

    def remember(self, req: ev.SendRequested, response: dict) -> None:
        summary = req.model_dump_json(by_alias=True, exclude=ev.SUMMARY_EXCLUDES)  # message_summary, as JSON
        self._items[req.email_id] = f"[{summary},{json.dumps(response, separators=(',', ':'))}]"
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def get(self, email_id: str) -> tuple[Any, ...] | None:
        found = self._items.get(email_id)
        return tuple(json.loads(found)) if found is not None else None


def prepare(rt: ApiContext, svc: ev.ServiceSaved, body: SendEmail, door: Door, email_id: str | None = None,
            key: ev.ApiKeySaved | None = None) -> tuple[Draft, ev.SendRequested] | Refusal:
    """Run the checks and build the request event (nothing is written yet); a refused send
    is a ``Refusal`` value, which the door maps to its protocol. ``key``: the API key it
    came with (its ``domain_id`` limits the From)."""
    state = rt.control.state
    if refused := check_active(svc):
        return refused
    rendered = apply_template(state, svc, body)
    if isinstance(rendered, Refusal):
        return rendered
    if refused := check_key_domain(state, key, rendered[0].from_):  # the From a template gave too
        return refused
    draft = Draft(body=rendered[0], service=svc, template_id=rendered[1])
    resolve_mode(draft, state, rt.settings.sandbox_from)
    if refused := apply_sandbox_rules(draft, state, door):
        return refused
    check_suppression(draft, state)
    req = build_request(draft, email_id or ev.new_id())
    # the position this decision rests on: a relay behind it waits (never sends unsigned)
    return draft, req.model_copy(update={"control_position": rt.control.position()})


LOG_DOWN = Refusal(503, "the event log is unavailable; nothing was sent, safe to retry", retry_after=1)


async def admit_requests(rt: ApiContext, takes: list[Take], reqs: list[ev.SendRequested],
                         all_or_nothing: bool = False) -> list[Decision] | Refusal:
    """Count each request against the service's rate limits and durably append those that
    fit, in one step (services/api/limits.py; ``takes[i]`` is ``reqs[i]``'s; a take past the
    requests counts without a record of its own): the decisions, or a refusal when the log did
    not confirm — then nothing in ``reqs`` may be reported as accepted. ``all_or_nothing``:
    every take fits and every request is appended, or none (each decision then the same
    refusal)."""
    records = [(r.email_id, ev.encode(r)) for r in reqs]  # outside the try: failing here is a bug, not the log's
    try:
        return await rt.limits.admit(ev.Topic.REQUESTS, takes, records, all_or_nothing)
    except LogRecordTooLarge as exc:  # a topic made with a smaller max.message.bytes (docs/operations.md)
        return too_large_for_the_log(exc, records)
    except LogUnavailable as exc:  # no acknowledgement in time (shared/log/deadline.py): may land later
        return Refusal(503, "the event log did not confirm the send in time; retry with the same "
                            "Idempotency-Key", retry_after=retry_after(rt), cause=exc)
    except Exception as exc:  # log unreachable or disk full
        return dataclasses.replace(LOG_DOWN, cause=exc)


def too_large_for_the_log(exc: LogRecordTooLarge, records: list[tuple[str, bytes]]) -> Refusal:
    """413 for a send the log refused as too large; in a batch, the item it was (``[i]``,
    the batch's field naming): nothing of the batch was appended then (shared/log/kafka.py)."""
    i = exc.index
    size = len(records[i][1]) if i is not None else max(len(value) for _, value in records)
    return Refusal(413, f"the message is too large for the event log ({size} bytes encoded); send smaller attachments",
                   field=f"[{i}]" if i is not None and len(records) > 1 else None, cause=exc)


DAILY_SCOPES = ("day", "sandbox day", "sandbox confirmations")  # the day windows (services/api/limits.py, manage/sandbox.py)


def rate_limited(decision: Decision) -> Refusal:
    """The refusal of a send over a limit: the service's numbers, one wording for every door,
    and the code that says which kind of limit (a day's quota, or the per-minute rate)."""
    code = "daily_quota_exceeded" if decision.scope in DAILY_SCOPES else "rate_limit_exceeded"
    return Refusal(429, f"rate limit reached ({decision.scope}: {decision.limit}); retry in {decision.retry_after} s",
                   retry_after=decision.retry_after, code=code, limits=decision)


def retry_after(rt: ApiContext) -> int:
    """Seconds a client should wait after an append timed out: about one timeout."""
    return max(1, math.ceil(rt.settings.log_append_timeout))


def remember(rt: ApiContext, req: ev.SendRequested, response: dict[str, Any]) -> None:
    if rt.recent is None:  # a process without the HTTP app (the submission listener alone)
        rt.recent = RecentSends()
    rt.recent.remember(req, response)
