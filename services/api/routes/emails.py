"""The two send doors (``POST /emails`` with an API key, ``POST /api/email/services/{id}/send``
with the admin token), batch send and the message lookup.

Each send: authenticate → validate → (idempotency) → prepare → rate limit → append → respond,
with ``RateLimit-*`` headers on the response (``Retry-After`` too on a 429)."""
from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request, Response
from pydantic import ValidationError

from services.api.auth import ServiceCaller, runtime, service_key
from services.api.email_lookup import lookup_email
from services.api.errors import http_error, item_error
from services.api.routes import schedule
from services.api.idempotency import body_hash, email_id_for
from services.api.schemas import BatchResult, EmailRecord, ErrorBody, SendEmail, SendResult
from services.api.refusal import Refusal
from services.api.sending import Door, admit_requests, prepare, rate_limited, remember, respond, summary, tracking_view
from services.api.validation_errors import first_error
from shared import metrics
from shared.failpoints import failpoint
from shared.store import queries

router = APIRouter(tags=["emails"])
ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
          409: {"model": ErrorBody}, 429: {"model": ErrorBody}, 503: {"model": ErrorBody}}
MAX_BATCH = 100
IDEMPOTENCY = Header(None, alias="Idempotency-Key", description="Same key + same body within 24 h: same response, nothing new sent.")


async def send(rt, svc, body: SendEmail, door: Door, idempotency_key: str | None, raw: bytes) -> tuple[dict, dict]:
    """One send through either door (``raw``: the request body, hashed for the Idempotency-Key):
    the response body and the ``RateLimit-*`` headers. A refusal raises ``HTTPException``
    (the app's handler renders it). The FastAPI routes below and the fast path
    (services/api/send_fast_path.py) both answer with this."""
    headers: dict[str, str] = {}
    if not idempotency_key:
        return await _send_one(rt, svc, body, door, None, headers), headers
    email_id = email_id_for(svc.service_id, idempotency_key)
    result = await rt.idempotency.run(svc.service_id, idempotency_key, body_hash(raw),
                                      lambda: _send_one(rt, svc, body, door, email_id, headers))
    if "RateLimit-Limit" not in headers:  # a replay: report the current state, take nothing
        headers.update((await rt.limits.peek(svc.service_id)).headers())
    return result, headers


async def _send_one(rt, svc, body: SendEmail, door: Door, email_id: str | None, headers: dict) -> dict:
    """prepare → count and append together (the service's limits) → respond."""
    limiter = rt.limits
    prepared = prepare(rt, svc, body, door, email_id)
    if isinstance(prepared, Refusal):
        raise http_error(prepared, (await limiter.peek(svc.service_id)).headers())
    draft, req = prepared
    take = await limiter.take_for(svc.service_id, sandboxed=draft.mode != "production", n=1 if draft.recipients else 0)
    decisions = await admit_requests(rt, [take], [req])
    if isinstance(decisions, Refusal):
        raise http_error(decisions)
    decision = decisions[0]
    if not decision.allowed:
        metrics.SENDS_ACCEPTED.labels("rate_limited").inc()
        raise http_error(rate_limited(decision), decision.headers())
    failpoint("api.after_append")  # tests: a crash before the Idempotency-Key keeps the response
    metrics.SENDS_ACCEPTED.labels("accepted").inc()
    result = respond(draft, req.email_id)
    remember(rt, req, result)
    headers.update(decision.headers())
    return result


async def _answer(request: Request, response: Response, sent: tuple[dict, dict]) -> dict:
    result, headers = sent
    response.headers.update(headers)
    request.state.email_id = result["id"]  # for the access log
    return result


async def _raw_if(request: Request, idempotency_key: str | None) -> bytes:
    return await request.body() if idempotency_key else b""


@router.post("/emails", response_model=SendResult, response_model_by_alias=True, responses=ERRORS)
async def send_email(request: Request, response: Response, body: SendEmail,
                     caller: ServiceCaller = Depends(service_key), rt=Depends(runtime),
                     idempotency_key: str | None = IDEMPOTENCY):
    """Send one email with a service API key (`Api-Key` header). Unverified sandbox
    recipients are refused (400)."""
    raw = await _raw_if(request, idempotency_key)
    return await _answer(request, response, await send(rt, caller.service, body, "emails", idempotency_key, raw))


@router.post("/api/email/services/{service_id}/send", response_model=SendResult, response_model_by_alias=True,
             responses=ERRORS)
async def send_for_service(service_id: str, request: Request, response: Response, body: SendEmail,
                           caller: ServiceCaller = Depends(service_key), rt=Depends(runtime),
                           idempotency_key: str | None = IDEMPOTENCY):
    """Send one email for ``service_id`` (`Authorization: Bearer <api key>`); unverified sandbox
    recipients are dropped (`dropped`, reason `sandbox`) rather than refused."""
    if caller.service.service_id != service_id:
        raise HTTPException(403, "this API key does not belong to the service in the path")
    raw = await _raw_if(request, idempotency_key)
    return await _answer(request, response, await send(rt, caller.service, body, "service", idempotency_key, raw))


@router.post("/emails/batch", response_model=BatchResult, response_model_by_alias=True, responses=ERRORS)
async def send_batch(response: Response, items: list[dict] = Body(..., max_length=MAX_BATCH),
                     caller: ServiceCaller = Depends(service_key), rt=Depends(runtime)):
    """Up to 100 emails in one call; each item succeeds or fails on its own (`data[i]` is the
    send result or `{"error": ...}`), all accepted ones are appended together."""
    if not items:
        raise HTTPException(400, "body: at least one email is required")
    svc, limiter = caller.service, rt.limits
    results: list[dict] = []
    prepared_items = []  # (index in results, draft, request, take)
    for i, raw in enumerate(items):
        try:
            prepared = prepare(rt, svc, SendEmail.model_validate(raw), "emails")
        except ValidationError as exc:
            results.append(item_error(f"[{i}].{first_error(exc.errors())}"))
            continue
        if isinstance(prepared, Refusal):
            results.append(item_error(f"[{i}].{prepared.text}", prepared.status))
            continue
        draft, req = prepared
        take = await limiter.take_for(svc.service_id, sandboxed=draft.mode != "production", n=1 if draft.recipients else 0)
        prepared_items.append((i, draft, req, take))
        results.append({})
    decisions = await admit_requests(rt, [t for *_, t in prepared_items], [r for _, _, r, _ in prepared_items])
    if isinstance(decisions, Refusal):
        raise http_error(decisions)
    for (i, draft, req, _), decision in zip(prepared_items, decisions):
        if not decision.allowed:
            metrics.SENDS_ACCEPTED.labels("rate_limited").inc()
            results[i] = item_error(f"[{i}] {rate_limited(decision).text}", 429)
            continue
        metrics.SENDS_ACCEPTED.labels("accepted").inc()
        results[i] = respond(draft, req.email_id)
        remember(rt, req, results[i])
    response.headers.update((await limiter.peek(svc.service_id)).headers())
    return {"data": results}


@router.get("/emails/{email_id}", response_model=EmailRecord, response_model_by_alias=True, responses=ERRORS)
async def get_email(email_id: str, caller: ServiceCaller = Depends(service_key), rt=Depends(runtime)):
    """The send record, per-recipient state and the event timeline; also the fields Resend's
    SDKs read (`object`, `last_event`, `reply_to`; `html`/`text` are null: bodies are not
    kept after sending)."""
    found = await email_record(rt, caller.service, email_id)
    if found is None:
        raise HTTPException(404, f"email {email_id} not found")
    return found


async def email_record(rt, svc, email_id: str) -> dict | None:
    """``GET /emails/{id}``'s body for a message of ``svc`` (None: not found, or another service's)."""
    found = await lookup_email(rt, svc, email_id)
    if found is None:
        return None
    record, events, response = found.record, found.events, found.response
    recipients = queries.recipient_states(events)
    for r in record.get("recipients", []):
        recipients.setdefault(r, {"status": "queued"})
    for d in record.get("dropped", []):
        recipients.setdefault(d["recipient"], {"status": "dropped", "reason": d["reason"]})
    return {
        "id": email_id, "status": "sent" if record.get("recipients") else "failed", "mode": record["mode"],
        "from": record["from"], "to": record["to"], "cc": record.get("cc", []), "bcc": record.get("bcc", []),
        "subject": record.get("subject", ""), "tags": record.get("tags", []), "created_at": record["time"],
        "scheduled_at": found.scheduled_at,
        "message": response.get("message") or summary(
            record.get("recipients", []), [(d["recipient"], d["reason"]) for d in record.get("dropped", [])],
            record.get("sending_domain")),
        "recipients": recipients, "events": events, "tracking": tracking_view(record),
        # what Resend's SDKs read besides the fields above (docs/compatibility.md)
        "object": "email", "last_event": found.last_event, "reply_to": record.get("reply_to", []),
        "html": None, "text": None,
    }


router.include_router(schedule.router)  # PATCH /emails/{id}, POST /emails/{id}/cancel
