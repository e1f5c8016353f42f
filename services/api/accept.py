"""Accept a send: the one use case behind every door (docs/architecture.md, "The accept core").

    idempotency (when keyed) → fetch remote attachments → prepare → limit + append (one step)
    → metrics → remember

``accept`` takes one message, ``accept_batch`` several at once (each accepted or refused on
its own, all appended together; or, a strict batch, all accepted or none). Both return
values — ``Accepted`` or a ``Refusal`` (services/api/refusal.py) — and raise only for bugs.
The doors are thin adapters that map them to their protocol: the JSON routes and the batch
route (routes/emails.py), the send fast path (send_fast_path.py) and SMTP submission
(submission/server.py). Nothing here knows HTTP or SMTP.

Nothing is reported as accepted before its request is durably on the log."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence, cast

from services.api.idempotency import body_hash, email_id_for
from services.api.idempotency.claims import Claim
from services.api.idempotency.gate import NothingSent
from services.api.parts import idempotency, limiter
from services.api.refusal import Refusal
from services.api.remote_attachments import fetch_remote
from services.api.schemas import SendEmail
from services.api.sending import Door, Draft, admit_requests, prepare, rate_limited, remember, respond
from shared import events as ev
from shared import metrics
from shared.failpoints import failpoint
from shared.log.port import LogRecordTooLarge
from shared.quota import Decision
from services.api.context import ApiContext

# A door's own last touch on the request before it is appended (SMTP: the client's bytes).
Finish = Callable[[Draft, ev.SendRequested], ev.SendRequested]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A send on the log: its answer (the ``SendResult`` body, also what an Idempotency-Key
    replays) and the service's rate-limit state after it (``RateLimit-*`` over HTTP)."""

    response: dict[str, Any]
    limits: Decision

    @property
    def email_id(self) -> str:
        return str(self.response["id"])


@dataclass(frozen=True, slots=True)
class _Prepared:
    draft: Draft
    request: ev.SendRequested


async def accept(rt: ApiContext, svc: ev.ServiceSaved, body: SendEmail, door: Door, key: str | None = None,
                 raw: bytes = b"", finish: Finish | None = None, api_key: ev.ApiKeySaved | None = None
                 ) -> Accepted | Refusal:
    """One send. With an Idempotency-Key ``key`` (``raw``: the request body, hashed), the same
    key and body within 24 h answer the first response and send nothing new (the email id is
    derived from the key); the gate's refusals (400, 409, 503) come back as they are.
    ``api_key``: the service key the send came with (a ``domain_id`` limits its From)."""
    if key is None:
        return await _accept_one(rt, svc, body, door, None, finish, api_key)
    fresh: list[Accepted] = []

    async def produce(email_id: str) -> dict[str, Any] | Refusal:
        outcome = await _accept_one(rt, svc, body, door, email_id, finish, api_key)
        if isinstance(outcome, Refusal):
            return outcome
        fresh.append(outcome)
        return outcome.response

    answer = await once_per_key(rt, svc, key, body_hash(raw), produce)
    if isinstance(answer, Refusal):
        return await with_limits(rt, svc, answer)
    if fresh:
        return fresh[0]
    return Accepted(answer, await limiter(rt).peek(svc.service_id))  # a replay: the state now, nothing taken


async def with_limits(rt: ApiContext, svc: ev.ServiceSaved, refusal: Refusal) -> Refusal:
    """``refusal`` carrying the service's limits as they are (nothing taken), for its
    ``RateLimit-*`` headers: every answer of a send door has them (docs/rate-limits.md)."""
    if refusal.limits is not None:
        return refusal
    return dataclasses.replace(refusal, limits=await limiter(rt).peek(svc.service_id))


async def once_per_key(rt: ApiContext, svc: ev.ServiceSaved, key: str, fingerprint: str,
                       produce: Callable[[str], Awaitable[dict[str, Any] | Refusal | NothingSent]]
                       ) -> dict[str, Any] | Refusal:
    """The first response given for the Idempotency-Key ``key`` with this ``fingerprint``
    (the request's body hash) within 24 h, or ``produce(email_id)``'s when this request holds
    the key: the email id is derived from the key, when its use began and the fingerprint (a
    batch derives its items' ids from it, ``item_email_id``). The gate's refusals (400, 409,
    503) come back as they are (services/api/idempotency/gate.py)."""
    async def holding(held: Claim) -> dict[str, Any] | Refusal | NothingSent:
        return await produce(email_id_for(svc.service_id, key, held.since, held.body_hash))

    return await idempotency(rt).run(svc.service_id, key, fingerprint, holding)


async def accept_batch(rt: ApiContext, svc: ev.ServiceSaved, bodies: Sequence[SendEmail], door: Door,
                       api_key: ev.ApiKeySaved | None = None, all_or_nothing: bool = False,
                       email_ids: Sequence[str] | None = None) -> list[Accepted | Refusal] | Refusal:
    """Several sends: ``[i]`` is ``bodies[i]``'s outcome; the prepared ones are counted and
    appended in one step. One ``Refusal`` for the whole when the log did not confirm the
    append (then none of them was accepted), or, ``all_or_nothing`` (Resend's strict batch),
    when any body is refused (a remote attachment that could not be fetched too): the first
    one's, as 422 naming ``[i]`` (nothing is appended); or when the items do not all fit the
    service's limits: the 429 a single send over them gets, its ``Retry-After`` when the whole
    batch fits (nothing counted, nothing appended). Permissive, an item over the limits is
    refused alone (its 429 at ``[i]``), the others sent. An item larger than the log takes (a
    Kafka topic made with a smaller ``max.message.bytes``; the log refuses it before appending
    any): strict, the batch's 413 naming ``[i]``; else that item's 413 and the others sent.
    ``email_ids``: the items' ids (a keyed batch's, derived from its key), else new ones."""
    fetched = [await fetch_remote(rt, body) for body in bodies]
    ids = list(email_ids) if email_ids is not None else [None] * len(bodies)
    prepared = [body if isinstance(body, Refusal) else prepare_one(rt, svc, body, door, email_id, api_key=api_key)
                for body, email_id in zip(fetched, ids)]
    if all_or_nothing and (refused := first_refused(prepared)):
        return await with_limits(rt, svc, refused)
    while True:
        chosen = [p for p in prepared if isinstance(p, _Prepared)]
        admitted = await _admit(rt, svc, chosen, all_or_nothing)
        if all_or_nothing or (i := _too_large_item(admitted)) is None:
            break
        # permissive: the item the log cannot take is refused alone, the others appended (none was)
        at = next(k for k, p in enumerate(prepared) if p is chosen[i])
        prepared[at] = dataclasses.replace(cast(Refusal, admitted), field=None)
    if isinstance(admitted, Refusal):
        return admitted
    if all_or_nothing and (over := next((a for a in admitted if isinstance(a, Refusal)), None)):
        return over  # the batch did not fit: every item has the same 429, and none was appended
    decided = iter(admitted)
    return [p if isinstance(p, Refusal) else next(decided) for p in prepared]


def first_refused(prepared: list[_Prepared | Refusal]) -> Refusal | None:
    """The first refused item as the whole batch's refusal: 422 ``[i].<field>: ...``."""
    for i, p in enumerate(prepared):
        if isinstance(p, Refusal):
            return dataclasses.replace(p, status=422, field=f"[{i}].{p.field}" if p.field else f"[{i}]",
                                       code="validation_error", limits=None)
    return None


async def _accept_one(rt: ApiContext, svc: ev.ServiceSaved, body: SendEmail, door: Door, email_id: str | None,
                      finish: Finish | None, api_key: ev.ApiKeySaved | None) -> Accepted | Refusal:
    """fetch remote attachments → prepare → limit + append → record; a refused preparation
    reports the limits as they are."""
    fetched = await fetch_remote(rt, body)
    prepared = fetched if isinstance(fetched, Refusal) else prepare_one(rt, svc, fetched, door, email_id, finish, api_key)
    if isinstance(prepared, Refusal):
        return dataclasses.replace(prepared, limits=await limiter(rt).peek(svc.service_id))
    admitted = await _admit(rt, svc, [prepared])
    return admitted if isinstance(admitted, Refusal) else admitted[0]


def prepare_one(rt: ApiContext, svc: ev.ServiceSaved, body: SendEmail, door: Door, email_id: str | None = None,
                finish: Finish | None = None, api_key: ev.ApiKeySaved | None = None) -> _Prepared | Refusal:
    """The checks and the request event (services/api/sending.py); nothing is written (a
    strict batch judges every item with it before any is appended)."""
    prepared = prepare(rt, svc, body, door, email_id, api_key)
    if isinstance(prepared, Refusal):
        return prepared
    draft, req = prepared
    return _Prepared(draft, finish(draft, req) if finish is not None else req)


async def _admit(rt: ApiContext, svc: ev.ServiceSaved, prepared: list[_Prepared], all_or_nothing: bool = False
                 ) -> list[Accepted | Refusal] | Refusal:
    """Count each request against the service's limits and append those that fit, in one step;
    ``all_or_nothing``: all of them, or none (then each is refused with the same 429)."""
    limits = limiter(rt)
    takes = [await limits.take_for(svc.service_id, sandboxed=p.draft.mode != "production",
                                   n=1 if p.draft.recipients else 0) for p in prepared]
    decisions = await admit_requests(rt, takes, [p.request for p in prepared], all_or_nothing)
    if isinstance(decisions, Refusal):
        return decisions
    return [_record(rt, p, decision) for p, decision in zip(prepared, decisions)]


def _too_large_item(admitted: list[Accepted | Refusal] | Refusal) -> int | None:
    """Which of the requests the log refused as too large, before appending any of them
    (shared/log/port.py ``LogRecordTooLarge.index``); None for any other outcome."""
    if isinstance(admitted, Refusal) and isinstance(admitted.cause, LogRecordTooLarge):
        return admitted.cause.index
    return None


def _record(rt: ApiContext, p: _Prepared, decision: Decision) -> Accepted | Refusal:
    """Count the outcome (``postline_api_sends_total``, every door alike) and remember an
    accepted send for ``GET /emails/{id}``."""
    if not decision.allowed:
        metrics.SENDS_ACCEPTED.labels("rate_limited").inc()
        return rate_limited(decision)
    failpoint("api.after_append")  # tests: a crash after the append, before anything is answered
    metrics.SENDS_ACCEPTED.labels("accepted").inc()
    response = respond(p.draft, p.request.email_id)
    remember(rt, p.request, response)
    return Accepted(response, decision)
