"""One error body for every error response, readable by two kinds of client at once.

Postline's own contract is ``{"error": "human-readable explanation"}``; Resend's SDKs read
``statusCode``, ``name`` and ``message`` (they turn anything else into "Unknown error").
Every error carries all four, so both kinds of client work unchanged:

    {"error": "to: is not a valid address", "message": "to: is not a valid address",
     "name": "validation_error", "statusCode": 400}

``name`` is a stable machine-readable code (documented in docs/compatibility.md); where
Resend has a name for the same situation it is Resend's."""
from __future__ import annotations

from fastapi import HTTPException

from services.api.refusal import Refusal

# status → name, when the message does not call for a finer one (see error_name)
NAMES = {
    400: "validation_error",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limit_exceeded",
    500: "application_error",
    503: "service_unavailable",
}


def error_name(status: int, message: str) -> str:
    """The machine-readable code of an error; the finer names follow the message that
    the raising code already writes (so no raise site has to know about this module)."""
    if status == 401 and message.lower().startswith("missing"):
        return "missing_api_key"
    if status == 409 and message.startswith("Idempotency-Key") and "in progress" in message:
        return "concurrent_idempotent_requests"
    if status == 409 and message.startswith("Idempotency-Key"):
        return "invalid_idempotent_request"
    if status == 429 and ("(day" in message or "(sandbox day" in message):
        return "daily_quota_exceeded"
    if status == 400 and message.startswith("Idempotency-Key"):
        return "invalid_idempotency_key"
    return NAMES.get(status) or ("application_error" if status >= 500 else "invalid_request")


def error_body(status: int, message: str, name: str | None = None) -> dict:
    """The body of an error response: ``error`` (the seed's field) and ``message``,
    ``name``, ``statusCode`` (Resend's)."""
    return {"error": message, "message": message, "name": name or error_name(status, message), "statusCode": status}


def http_error(refusal: Refusal, headers: dict[str, str] | None = None) -> HTTPException:
    """The HTTP error of a send step's refusal (raised by the route, rendered by the app's
    handler as ``error_body``); ``Retry-After`` when the refusal is temporary."""
    extra = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
    exc = HTTPException(refusal.status, refusal.text, headers={**(headers or {}), **extra} or None)
    exc.__cause__ = refusal.cause  # a fault behind it is logged with the request id (app.py)
    return exc


def item_error(message: str, status: int = 400) -> dict:
    """One failed item of a batch (``data[i]``): the same four fields."""
    return error_body(status, message)
