"""The API process: FastAPI app with JSON errors ``{"error": "..."}`` everywhere."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.routes import dev, domains, emails, keys, sandbox, services

log = logging.getLogger(__name__)


def _field(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    # pydantic puts the union member type into the path ("str", "list[str]"); drop it
    parts = [p for p in parts if p not in ("str", "list[str]", "function-after[_addresses(), union[str,list[str]]]")]
    name = ".".join(parts).replace("from_", "from")
    return name or "body"


def validation_message(exc: RequestValidationError) -> str:
    err = exc.errors()[0]
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if err.get("type") == "json_invalid":
        return "body: invalid JSON"
    if err.get("type") == "missing":
        return f"{_field(err['loc'])}: field required"
    if err.get("type") == "extra_forbidden":
        return f"{_field(err['loc'])}: unknown field"
    field = _field(err["loc"])
    if ": " in msg and field in ("body",):
        return msg  # model-level rule already names its field
    return f"{field}: {msg}"


def create_app(runtime) -> FastAPI:
    app = FastAPI(title="Postline", version="0.1.0",
                  description="Transactional email: send API, management API, events.",
                  responses={400: {"description": "Invalid input"}, 401: {"description": "Missing or invalid credential"}})
    app.state.runtime = runtime

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"error": validation_message(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error; safe to retry"}, status_code=500)

    @app.get("/healthz", include_in_schema=False)
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz():
        ready = runtime.control is not None and runtime.control.ready.is_set()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    for module in (services, keys, domains, sandbox, emails, dev):
        app.include_router(module.router)
    return app
