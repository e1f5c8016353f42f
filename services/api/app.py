"""The API process: FastAPI app with JSON errors ``{"error": "..."}`` everywhere."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.allow import allowed_methods
from services.api.idempotency import IdempotencyStore
from services.api.limits import RateLimiter
from services.api.request_ids import RequestIds, request_id_of
from services.api.schemas import ErrorBody
from services.api.text_checks import RejectUnencodable
from services.api.validation_errors import first_error
from services.ops import add_ops_routes
from services.api.routes import analytics, dev, domains, emails, keys, sandbox, services, suppressions, webhooks

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 40 * 1024 * 1024  # a batch of emails; one email is capped at 10 MB by the schema


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before they are read into memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, self.max_bytes)


class _TooLarge(Exception):
    pass


async def _too_large(send, limit: int) -> None:
    body = ('{"error": "body: larger than %d MB"}' % (limit // (1024 * 1024))).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def create_app(runtime) -> FastAPI:
    error = {"model": ErrorBody}
    app = FastAPI(title="Postline", version="0.1.0",
                  description="Transactional email: send API, management API, events. Errors are `{\"error\": \"...\"}`.",
                  responses={400: {**error, "description": "Invalid input (the message names the field)"},
                             401: {**error, "description": "Missing or invalid credential"},
                             403: {**error, "description": "Valid credential, but not allowed here"},
                             404: {**error, "description": "Not found (or another tenant's)"},
                             409: {**error, "description": "Conflict"},
                             413: {**error, "description": "Body too large"},
                             429: {**error, "description": "Rate limit reached"},
                             503: {**error, "description": "A dependency is unavailable; safe to retry"}})
    app.state.runtime = runtime
    if runtime is not None:
        s = runtime.settings
        runtime.extras.setdefault("limits", RateLimiter(s.api_replicas, runtime.store, s.rate_per_minute, s.rate_per_day))
        runtime.extras.setdefault("idempotency", IdempotencyStore(runtime.settings.data_dir / "idempotency.sqlite3"))
    app.add_middleware(RejectUnencodable)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(RequestIds)  # outermost: every answer, the middlewares' own included, has the id

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": first_error(exc.errors())}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code >= 500:  # an infrastructure fault: logged, and the client gets the id to quote
            rid = request_id_of(request.scope)
            log.error("request %s: %s %s → %d %s", rid, request.method, request.url.path, exc.status_code,
                      exc.detail, exc_info=exc.__cause__)
            return JSONResponse({"error": str(exc.detail), "request_id": rid}, status_code=exc.status_code,
                                headers={**(getattr(exc, "headers", None) or {}), "X-Request-Id": rid})
        if exc.status_code == 405:
            return JSONResponse({"error": str(exc.detail)}, status_code=405,
                                headers={"Allow": ", ".join(allowed_methods(request.app, request.scope))})
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # Runs outside the middlewares (Starlette's ServerErrorMiddleware): set the header here.
        rid = request_id_of(request.scope)
        log.exception("request %s: unhandled error on %s %s", rid, request.method, request.url.path)
        return JSONResponse({"error": "internal error", "request_id": rid}, status_code=500,
                            headers={"X-Request-Id": rid})

    add_ops_routes(app, runtime)

    for module in (services, keys, domains, sandbox, suppressions, webhooks, analytics, emails, dev):
        app.include_router(module.router)
    return app
