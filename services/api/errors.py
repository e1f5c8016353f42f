"""The HTTP edge's errors: one body for every error response, readable by two kinds of client.

Postline's own contract is ``{"error": "human-readable explanation"}``; Resend's SDKs read
``statusCode``, ``name`` and ``message`` (they turn anything else into "Unknown error").
Every error carries all four, so both kinds of client work unchanged:

    {"error": "to: is not a valid address", "message": "to: is not a valid address",
     "name": "validation_error", "statusCode": 400}

``name`` is a stable machine-readable code (documented in docs/compatibility.md): a
``Refusal``'s ``code`` where the refusal was made, else the status's (``refusal.code_for``);
it is never derived from the message. Below the edge nothing raises HTTP errors: use cases
return ``Refusal`` values, and this module turns them into answers — ``http_error`` for a
route to raise, ``error_response`` for the app's handler and the send fast path."""
from __future__ import annotations

import logging
from typing import Any, Mapping, TypeVar

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from services.api.php_errors import is_php, php_shape
from services.api.refusal import Refusal, code_for
from services.api.request_ids import request_id_of

log = logging.getLogger(__name__)


def error_body(status: int, message: str, name: str | None = None) -> dict[str, Any]:
    """The body of an error response: ``error`` (the seed's field) and ``message``,
    ``name``, ``statusCode`` (Resend's); ``name`` defaults to the status's code."""
    return {"error": message, "message": message, "name": name or code_for(status), "statusCode": status}


class RefusedHTTP(HTTPException):
    """A refusal raised by a route or dependency; the app's handler answers it with the
    refusal's code as ``name``."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.status, refusal.text, headers=refusal_headers(refusal))
        self.refusal = refusal
        self.__cause__ = refusal.cause  # a fault behind it is logged with the request id


def http_error(refusal: Refusal) -> RefusedHTTP:
    """The HTTP error of a refusal, for the edge to raise (rendered by ``error_response``)."""
    return RefusedHTTP(refusal)


T = TypeVar("T")


def unless_refused(outcome: T | Refusal) -> T:
    """A use case's value, or its refusal raised as the HTTP error (for routes)."""
    if isinstance(outcome, Refusal):
        raise http_error(outcome)
    return outcome


def refusal_headers(refusal: Refusal) -> dict[str, str] | None:
    """``RateLimit-*`` when the refusal reports the service's limits, and ``Retry-After``
    when it is temporary."""
    limits = refusal.limits.headers() if refusal.limits is not None else {}
    extra = {"Retry-After": str(refusal.retry_after)} if refusal.retry_after is not None else {}
    return {**limits, **extra} or None


def name_of(exc: StarletteHTTPException) -> str:
    """The ``name`` of an HTTP error: its refusal's code, else its status's."""
    return exc.refusal.name if isinstance(exc, RefusedHTTP) else code_for(exc.status_code)


def error_response(request: Request, status: int, message: str, name: str,
                   headers: Mapping[str, str] | None = None, cause: BaseException | None = None) -> JSONResponse:
    """An error answer. A 5xx is an infrastructure fault: it is logged (with ``cause``) and
    the client gets the request id to quote, in the body and as ``X-Request-Id``."""
    if status < 500:
        return JSONResponse(error_body(status, message, name), status_code=status, headers=headers)
    rid = request_id_of(request.scope)
    log.error("request %s: %s %s → %d %s", rid, request.method, route_of(request), status, message, exc_info=cause)
    return JSONResponse({**error_body(status, message, name), "request_id": rid}, status_code=status,
                        headers={**(headers or {}), "X-Request-Id": rid})


def refusal_response(request: Request, refusal: Refusal) -> JSONResponse:
    """A refusal's answer, as the app's handler renders ``http_error(refusal)``."""
    return error_response(request, refusal.status, refusal.text, refusal.name, refusal_headers(refusal), refusal.cause)


def unexpected_response(request: Request) -> JSONResponse:
    """The 500 of a fault nothing handled (call it inside ``except``: the log line carries the
    traceback): the request id in the body and the header, the body in resend-php's shape for
    that SDK. The app's handler for ``Exception`` and the send fast path both answer with it."""
    rid = request_id_of(request.scope)
    log.exception("request %s: unhandled error on %s %s", rid, request.method, route_of(request))
    body = {**error_body(500, "internal error"), "request_id": rid}
    return JSONResponse(php_shape(body) if is_php(request.scope) else body, status_code=500,
                        headers={"X-Request-Id": rid})


def route_of(request: Request) -> str | None:
    """The route template: a raw path can hold a token (``/t/u/…``) or an address."""
    return getattr(request.scope.get("route"), "path", None)


def item_error(message: str, status: int = 400, name: str | None = None) -> dict[str, Any]:
    """One failed item of a batch (``data[i]``): the same four fields."""
    return error_body(status, message, name)
