"""The send routes (JSON, the service door, batch) and the message lookup.

Each send route is a thin adapter over the accept core (services/api/accept.py): read the
request → ``accept`` → the answer with ``RateLimit-*`` headers, or the refusal as an HTTP error
(``Retry-After`` too on a 429 or 503). The send fast path (send_fast_path.py) answers plain
sends with the same core before FastAPI's routing; both answer byte for byte alike."""
from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Body, Depends, Header, Request, Response
from pydantic import ValidationError

from services.api.accept import Accepted, accept, accept_batch, once_per_key, with_limits
from services.api import not_offered
from services.api.auth import ServiceCaller, runtime, service_key
from services.api.email_lookup import email_record
from services.api.idempotency import body_hash, item_email_id
from services.api.idempotency.gate import NothingSent
from services.api.errors import http_error, item_error
from services.api.parts import limiter
from services.api.routes import schedule
from services.api.schemas import BatchResult, EmailRecord, ErrorBody, SendEmail, SendResult
from services.api.refusal import Refusal
from services.api.sending import Door
from services.api.validation_errors import first_error
from shared import events as ev
from services.api.context import ApiContext

router = APIRouter(tags=["emails"])
ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
          409: {"model": ErrorBody}, 422: {"model": ErrorBody, "description": "A remote attachment (`path`) could not be fetched."},
          429: {"model": ErrorBody}, 503: {"model": ErrorBody}}
MAX_BATCH = 100
BATCH_VALIDATION = Header("strict", alias="x-batch-validation",
                          description="`strict` (default): all or nothing; `permissive`: the valid items are sent.")
IDEMPOTENCY = Header(None, alias="Idempotency-Key", description="Same key + same body within 24 h: same response, nothing new sent.")


async def _send(request: Request, response: Response, rt: ApiContext, caller: ServiceCaller, body: SendEmail,
                door: Door, idempotency_key: str | None) -> dict[str, Any]:
    """read the body (hashed for the Idempotency-Key) → accept → answer or raise the refusal."""
    raw = await request.body() if idempotency_key is not None else b""
    outcome = await accept(rt, caller.service, body, door, idempotency_key, raw, api_key=caller.key)
    if isinstance(outcome, Refusal):  # the log's refusals (503, 413) carry no limits of their own
        raise http_error(await with_limits(rt, caller.service, outcome))
    response.headers.update(outcome.limits.headers())
    request.state.email_id = outcome.email_id  # for the access log
    return outcome.response


@router.post("/emails", response_model=SendResult, response_model_by_alias=True, responses=ERRORS)
async def send_email(request: Request, response: Response, body: SendEmail,
                     caller: ServiceCaller = Depends(service_key), rt: ApiContext = Depends(runtime),
                     idempotency_key: str | None = IDEMPOTENCY) -> dict[str, Any]:
    """Send one email with a service API key (`Api-Key` header). Unverified sandbox
    recipients are refused (400)."""
    return await _send(request, response, rt, caller, body, "emails", idempotency_key)


@router.post("/api/email/services/{service_id}/send", response_model=SendResult, response_model_by_alias=True,
             responses=ERRORS)
async def send_for_service(service_id: str, request: Request, response: Response, body: SendEmail,
                           caller: ServiceCaller = Depends(service_key), rt: ApiContext = Depends(runtime),
                           idempotency_key: str | None = IDEMPOTENCY) -> dict[str, Any]:
    """Send one email for ``service_id`` (`Authorization: Bearer <api key>`); unverified sandbox
    recipients are dropped (`dropped`, reason `sandbox`) rather than refused."""
    if caller.service.service_id != service_id:  # the key's service's limits, as on every send answer
        raise http_error(await with_limits(rt, caller.service,
                                           Refusal(403, "this API key does not belong to the service in the path")))
    return await _send(request, response, rt, caller, body, "service", idempotency_key)


@router.post("/emails/batch", response_model=BatchResult, response_model_by_alias=True,
             response_model_exclude_unset=True, responses={**ERRORS, 422: {"model": ErrorBody}})
async def send_batch(request: Request, response: Response, items: list[Any] = Body(..., max_length=MAX_BATCH),
                     caller: ServiceCaller = Depends(service_key), rt: ApiContext = Depends(runtime),
                     validation: str = BATCH_VALIDATION, idempotency_key: str | None = IDEMPOTENCY) -> dict[str, Any]:
    """Up to 100 emails in one call, appended together. `x-batch-validation: strict` (the
    default, as Resend's): any invalid item → 422 naming its index and field, nothing sent.
    `permissive`: the valid items are sent; `data` holds them, `errors` the others
    (`[{index, message}]`). Rate limits: a strict batch is counted as a whole — when its
    items do not all fit, nothing is sent and the answer is the 429 a single send gets
    (`Retry-After`: when the whole batch fits); permissive, an item over the limit is in
    `errors` and the others are sent, and a batch every item of which the limit refused is
    that 429. `Idempotency-Key`: the same key, body and validation mode within 24 h answer
    the first response and send nothing new (the items' ids are derived from the key; an
    item refused in it, e.g. over the rate limit, is refused in the replay too). A batch of
    which no item was sent does not use up its key."""
    if not items:
        raise http_error(Refusal(400, "body: at least one email is required"))
    mode = validation.strip().lower()
    if mode not in ("strict", "permissive"):
        raise http_error(Refusal(400, f"must be strict or permissive (got {validation[:40]!r})", "x-batch-validation"))
    parsed, strict = [_parse_item(i, item) for i, item in enumerate(items)], mode == "strict"

    async def keyed(email_id: str) -> dict[str, Any] | Refusal | NothingSent:
        outcome = await _batch(rt, caller, parsed, strict, email_id)
        # every item refused: answered without using up the key
        return NothingSent(outcome) if isinstance(outcome, dict) and not outcome["data"] else outcome

    if idempotency_key is None:
        outcome = await _batch(rt, caller, parsed, strict, None)
    else:
        fingerprint = f"{body_hash(await request.body())}|batch|{mode}"  # a single send's key never matches it
        outcome = await once_per_key(rt, caller.service, idempotency_key, fingerprint, keyed)
    # strict: an item's refusal (422) or the batch over the limit (429); every item over the limit (429);
    # the log is down (503); the key's (400, 409)
    if isinstance(outcome, Refusal):
        raise http_error(await with_limits(rt, caller.service, outcome))
    response.headers.update((await limiter(rt).peek(caller.service.service_id)).headers())
    return outcome


async def _batch(rt: ApiContext, caller: ServiceCaller, parsed: list[SendEmail | Refusal], strict: bool,
                 email_id: str | None) -> dict[str, Any] | Refusal:
    """The batch's answer (``data``, and ``errors`` when permissive or any item failed), or its
    refusal (nothing sent then): strict, an invalid item's 422 or the batch's 429; permissive,
    the 429 when the rate limit refused every item (a 200 with empty ``data`` would read as a
    success to Resend's SDKs, not as "retry later"). ``email_id``: a keyed batch's, from which
    its items' ids are derived."""
    if strict and (invalid := next((p for p in parsed if isinstance(p, Refusal)), None)):
        return invalid
    bodies = [(i, p) for i, p in enumerate(parsed) if isinstance(p, SendEmail)]
    ids = [item_email_id(email_id, i) for i, _ in bodies] if email_id is not None else None
    outcomes = await accept_batch(rt, caller.service, [b for _, b in bodies], "emails", caller.key,
                                  all_or_nothing=strict, email_ids=ids)
    if isinstance(outcomes, Refusal):
        return outcomes
    if len(outcomes) == len(parsed) and all(_over_the_limit(o) for o in outcomes):
        return cast(Refusal, outcomes[0])  # every item refused by the limit: the batch's 429, as a single send's
    decided = iter(outcomes)
    results = [_item_result(i, next(decided)) if isinstance(p, SendEmail) else item_error(p.text, p.status, p.name)
               for i, p in enumerate(parsed)]
    errors = [{"index": i, "message": r["message"]} for i, r in enumerate(results) if "id" not in r]
    return {"data": [r for r in results if "id" in r], **({"errors": errors} if errors or not strict else {})}


def _over_the_limit(outcome: Accepted | Refusal) -> bool:
    """Refused by the service's rate limits (``sending.rate_limited``: 429 carrying them)."""
    return isinstance(outcome, Refusal) and outcome.status == 429 and outcome.limits is not None


def _parse_item(i: int, item: Any) -> SendEmail | Refusal:
    """The item as a ``SendEmail``, or its 422 refusal (``[i].<field>: ...``; ``[i]: ...`` for
    an item that is no object: judged like any other, so a permissive batch sends the rest)."""
    if not isinstance(item, dict):
        return Refusal(422, f"[{i}]: must be an email object, got {type(item).__name__ if item is not None else 'null'}")
    try:
        return SendEmail.model_validate(item)
    except ValidationError as exc:
        return Refusal(422, f"[{i}].{first_error(exc.errors())}")


def _item_result(i: int, outcome: Accepted | Refusal) -> dict[str, Any]:
    """The send result, or the refusal's error (``[i].<field>: ...``; a rate limit's as
    ``[i] rate limit reached ...``)."""
    if isinstance(outcome, Accepted):
        return outcome.response
    sep = " " if outcome.status == 429 else "."
    return item_error(f"[{i}]{sep}{outcome.text}", outcome.status, outcome.name)


@router.get("/emails/{email_id}", response_model=EmailRecord, response_model_by_alias=True, responses=ERRORS)
async def get_email(email_id: str, caller: ServiceCaller = Depends(service_key),
                    rt: ApiContext = Depends(runtime)) -> dict[str, Any]:
    """The send record, per-recipient state and the event timeline; also the fields Resend's
    SDKs read (`object`, `last_event`, `reply_to`; `html`/`text` are null: bodies are not
    kept after sending)."""
    found = await email_record(rt, caller.service, email_id)
    if found is None:  # ``/emails/receiving`` and ``/emails/metrics`` are Resend paths, not ids
        raise http_error(not_offered.refusal_for("GET", f"/emails/{email_id}")
                         or Refusal(404, f"email {email_id} not found"))
    return found


router.include_router(schedule.router)  # PATCH /emails/{id}, POST /emails/{id}/cancel
