"""The API process: FastAPI app with JSON errors ``{"error": "..."}`` everywhere."""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.actors import AuditContext
from services.api.allow import allowed_methods
from services.api.context import ApiContext
from services.api.errors import error_body, error_response, name_of, refusal_response, route_of, unexpected_response
from services.api.request_ids import RequestIds
from services.api.php_errors import PhpErrorShape
from services.api.request_log import RequestLog
from services.api.schemas import ErrorBody
from services.api.send_fast_path import SendFastPath
from services.api.text_checks import RejectUnencodable
from services.api.validation_errors import first_error
from services.ops import add_ops_routes
from services.api import dashboard, not_offered
from shared.control.errors import ChangeRefused, ControlBehind
from shared.runtime import Runtime
from services.api.routes import (analytics, audit_log, dev, domains, emails, ip_pools, keys, receiving, resend,
                                 sandbox, services, shaping, suppressions, templates, tracking, webhooks)

MAX_BODY_BYTES = 40 * 1024 * 1024  # a batch of emails; one email is capped at 10 MB by the schema


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(send, self.max_bytes)
        seen = 0

        async def limited() -> Message:
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


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(error_body(413, "body: larger than %d MB" % (limit // (1024 * 1024)))).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def add_docs_routes(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served by Postline itself (the
    files shipped in the ``fastapi-offline`` package), so they work without internet."""
    import fastapi_offline

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _self_only(get_swagger_ui_html(openapi_url="/openapi.json", title="Postline API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": True}))

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _self_only(get_redoc_html(openapi_url="/openapi.json", title="Postline API",
                                         redoc_js_url="/docs-assets/redoc.standalone.js",
                                         redoc_favicon_url="/docs-assets/favicon.png", with_google_fonts=False))


def _self_only(page: HTMLResponse) -> HTMLResponse:
    """The browser loads nothing from elsewhere (ReDoc's bundle links a logo on its CDN;
    this policy stops the request before it leaves the machine)."""
    page.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'")
    return page


def asgi_app(runtime: Runtime) -> ASGIApp:
    """What the HTTP server serves: the send fast path (services/api/send_fast_path.py) in
    front of the FastAPI app, which answers everything the fast path does not take."""
    app = create_app(runtime)
    return SendFastPath(app, app.state.runtime, max_body_bytes=MAX_BODY_BYTES)


def create_app(runtime: Runtime | None) -> FastAPI:
    """The API's app over ``runtime``'s process (None: no routes work; for the OpenAPI schema)."""
    error = {"model": ErrorBody}
    app = FastAPI(title="Postline", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Transactional email: send API, management API, events. Errors are `{\"error\": \"...\"}`.",
                  responses={400: {**error, "description": "Invalid input (the message names the field)"},
                             401: {**error, "description": "Missing or invalid credential"},
                             403: {**error, "description": "Valid credential, but not allowed here"},
                             404: {**error, "description": "Not found (or another tenant's)"},
                             409: {**error, "description": "Conflict"},
                             413: {**error, "description": "Body too large"},
                             429: {**error, "description": "Rate limit reached"},
                             503: {**error, "description": "A dependency is unavailable; safe to retry"}})
    ctx = ApiContext.of(runtime) if runtime is not None else None  # what every route reads
    app.state.runtime = ctx
    app.add_middleware(RejectUnencodable)  # innermost
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(PhpErrorShape)  # outside the body limit: its 413 is reshaped too
    app.add_middleware(RequestLog)
    app.add_middleware(AuditContext)  # who acts, for the audit log; inside RequestIds (it reads the id)
    app.add_middleware(RequestIds)  # outside the others: every answer, the middlewares' own included, has the id
    app.add_middleware(tracking.HotPaths, runtime=ctx)  # outermost: the pixel and redirects skip the rest

    add_error_handlers(app)
    add_control_error_handlers(app)
    add_ops_routes(app, runtime)
    add_docs_routes(app)

    # receiving before emails: /emails/receiving is not GET /emails/{email_id}
    for module in (tracking, services, keys, domains, sandbox, suppressions, webhooks, analytics, receiving, emails, dev,
                   resend, audit_log, shaping, ip_pools):
        app.include_router(module.router)
    for router in templates.routers:  # their own routers, before any catch-all of Resend's paths
        app.include_router(router)
    dashboard.mount(app)
    return app


def add_control_error_handlers(app: FastAPI) -> None:
    """The control plane's refusals (shared/control/errors.py), from any route or page."""

    @app.exception_handler(ChangeRefused)
    async def _refused(request: Request, exc: ChangeRefused) -> JSONResponse:  # 409 (changed meanwhile) or 404 (deleted)
        return JSONResponse(error_body(exc.status, str(exc)), status_code=exc.status)

    @app.exception_handler(ControlBehind)
    async def _behind(request: Request, exc: ControlBehind) -> JSONResponse:
        return JSONResponse(error_body(503, str(exc)), status_code=503, headers={"Retry-After": "1"})


SEND_ROUTES = frozenset({"/emails", "/emails/batch", "/api/email/services/{service_id}/send"})


async def _send_limits(request: Request) -> dict[str, str] | None:
    """The ``RateLimit-*`` headers of a send door's answer (on every send response: docs/rate-limits.md),
    for a body its schema refused once the key was checked (``auth.service_key`` names the
    service); None elsewhere, and for JSON that could not be read at all (FastAPI refuses it
    before the key is looked at: whose limits they would be is not known)."""
    service_id = getattr(request.state, "service_id", None)
    if service_id is None or request.method != "POST" or route_of(request) not in SEND_ROUTES:
        return None
    rt: ApiContext = request.app.state.runtime
    return (await rt.limits.peek(service_id)).headers()


UNPARSED_BODY = "There was an error parsing the body"  # FastAPI's detail when its JSON decoding raises other than JSONDecodeError


def add_error_handlers(app: FastAPI) -> None:
    """Every error in the one body shape (services/api/errors.py): validation → 400 (415 for a
    form body), HTTP errors with their status, anything unexpected → 500 with the request id."""

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        body_refused = any(e.get("loc", ("",))[0] == "body" for e in exc.errors())
        if body_refused and not _is_json(request.headers.get("content-type")):
            # curl -d without -H 'content-type: application/json' sends a form: say what to fix
            return JSONResponse(error_body(415, "body: send JSON with the header Content-Type: application/json "
                                                f"(got {request.headers.get('content-type') or 'no Content-Type'})"),
                                status_code=415, headers=await _send_limits(request))
        return JSONResponse(error_body(400, first_error(exc.errors())), status_code=400,
                            headers=await _send_limits(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unrouted = exc.status_code == 405 or (exc.status_code == 404 and request.scope.get("route") is None)
        if unrouted and (elsewhere := not_offered.refusal_for(request.method, request.url.path)):
            return refusal_response(request, elsewhere)  # a Resend path Postline does not offer
        if exc.status_code == 405:
            return JSONResponse(error_body(405, str(exc.detail)), status_code=405,
                                headers={"Allow": ", ".join(allowed_methods(request.app, request.scope))})
        if exc.status_code == 400 and exc.detail == UNPARSED_BODY:  # FastAPI's words, naming no field
            return JSONResponse(error_body(400, "body: not valid JSON (not UTF-8, nested too deep, or a number "
                                                "too long)"), status_code=400)
        # a 5xx is logged with its cause, and the client gets the request id to quote
        return error_response(request, exc.status_code, str(exc.detail), name_of(exc), exc.headers, exc.__cause__)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Runs outside the middlewares (Starlette's ServerErrorMiddleware): it sets the header itself.
        return unexpected_response(request)
