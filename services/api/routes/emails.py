"""The two send doors (SPEC §5) and the message lookup."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from services.api.auth import ServiceCaller, runtime, service_key
from services.api.schemas import ErrorBody, SendEmail, SendResult
from services.api.sending import accept
from shared.store import queries

router = APIRouter(tags=["emails"])
ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody},
          429: {"model": ErrorBody}, 503: {"model": ErrorBody}}


@router.post("/emails", response_model=SendResult, response_model_by_alias=True, responses=ERRORS)
async def send_email(body: SendEmail, caller: ServiceCaller = Depends(service_key), rt=Depends(runtime)):
    """Send one email with a service API key (`Api-Key` header)."""
    return await accept(rt, caller.service, body, door="emails")


@router.post("/api/email/services/{service_id}/send", response_model=SendResult, response_model_by_alias=True,
             responses=ERRORS)
async def send_for_service(service_id: str, body: SendEmail, caller: ServiceCaller = Depends(service_key),
                           rt=Depends(runtime)):
    """Send one email for ``service_id`` (`Authorization: Bearer <api key>`); unverified sandbox
    recipients are dropped rather than refused."""
    if caller.service.service_id != service_id:
        raise HTTPException(403, "this API key does not belong to the service in the path")
    return await accept(rt, caller.service, body, door="service")


@router.get("/emails/{email_id}", responses=ERRORS)
async def get_email(email_id: str, caller: ServiceCaller = Depends(service_key), rt=Depends(runtime)):
    """The send record, per-recipient state and the event timeline."""
    svc = caller.service
    record, events = None, []
    if rt.store is not None:
        try:
            record = await queries.message(rt.store, email_id, svc.workspace_id)
            events = await queries.timeline(rt.store, email_id, svc.workspace_id) if record else []
        except Exception:  # analytics store down: fall back to what this process remembers
            record = None
    recent = rt.extras.get("recent")
    remembered = recent.get(email_id) if recent else None
    if record is None and remembered is not None:
        req, _ = remembered
        record = req.model_dump(mode="json", by_alias=True, exclude={"html", "text", "attachments"})
    if record is None or record.get("service_id") != svc.service_id:
        raise HTTPException(404, f"email {email_id} not found")
    response = remembered[1] if remembered else {}
    recipients = queries.recipient_states(events)
    for r in record.get("recipients", []):
        recipients.setdefault(r, {"status": "queued"})
    for d in record.get("dropped", []):
        recipients.setdefault(d["recipient"], {"status": "dropped", "reason": d["reason"]})
    return {
        "id": email_id, "status": "sent" if record.get("recipients") else "failed", "mode": record["mode"],
        "from": record["from"], "to": record["to"], "cc": record.get("cc", []), "bcc": record.get("bcc", []),
        "subject": record.get("subject", ""), "tags": record.get("tags", []), "created_at": record["time"],
        "message": response.get("message") or _summary(record),
        "recipients": recipients, "events": events,
    }


def _summary(record: dict) -> str:
    if not record.get("recipients"):
        return "No email sent"
    via = f"via domain {record['sending_domain']}" if record.get("sending_domain") else "via the sandbox sender"
    return f"Email sent to {', '.join(record['recipients'])} {via}"
