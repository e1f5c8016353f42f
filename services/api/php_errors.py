"""Error bodies for Resend's PHP SDK (resend-php, and resend-laravel on top of it).

Every error body carries the seed's ``error`` string and Resend's ``message``, ``name`` and
``statusCode`` (errors.py). resend-php reads ``error`` first: a string there becomes an
exception without a type or code, and its ``getErrorType()``/``getErrorCode()`` then throw a
``TypeError`` (they are declared ``string``/``int`` and find null). So for a request whose
User-Agent is resend-php's (``resend-php/<version>``), ``error`` is an object with the same
four fields instead — what that SDK's HttpTransporter reads (``message``; ``type`` or
``name``; ``code`` or ``statusCode``). Every other client keeps the string.

An unhandled fault (500) is answered by Starlette's outermost error middleware, outside this
one: the app's handler for it shapes its body with ``php_shape`` itself."""
from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PHP_AGENT = b"resend-php/"


def is_php(scope: Scope) -> bool:
    agent = dict(scope.get("headers") or []).get(b"user-agent", b"")
    return agent.lower().startswith(PHP_AGENT)


def php_shape(doc: dict[str, Any]) -> dict[str, Any]:
    """An error body with its ``error`` string as ``{message, name, statusCode, type, code}``."""
    if not isinstance(doc.get("error"), str):
        return doc
    name, status = doc.get("name") or "application_error", doc.get("statusCode")
    return {**doc, "error": {"message": doc["error"], "name": name, "statusCode": status, "type": name, "code": status}}


def php_body(body: bytes) -> bytes:
    """``php_shape`` of a JSON error body; the body as it was when it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        return body
    return json.dumps(php_shape(doc)).encode() if isinstance(doc, dict) and isinstance(doc.get("error"), str) else body


class PhpErrorShape:
    """ASGI middleware: rewrites JSON error answers (status ≥ 400) for resend-php only; other
    requests pass through untouched (nothing is buffered for them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_php(scope):
            return await self.app(scope, receive, send)
        start: Message | None = None
        chunks: list[bytes] = []

        async def reshape(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400 and _json(message):
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                body = php_body(b"".join(chunks))
                headers = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, reshape)


def _json(start: Message) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v.lower() for k, v in start.get("headers", []))
