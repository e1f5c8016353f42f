"""Request ids: every response carries ``X-Request-Id``; a 5xx also names it in its body
(``request_id``) and in the log line that records the fault, so an operator can find the
cause of the error a client reports.

A client's own ``X-Request-Id`` is kept when it is a short token (so ids can be followed
across a client's systems); anything else is replaced, never echoed (no header injection,
no log forging)."""
from __future__ import annotations

import re
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
SCOPE_KEY = "postline.request_id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._:-]{8,64}")


def request_id_of(scope: Scope) -> str:
    """The id of the request in ``scope`` ("-" outside a request that went through the middleware)."""
    return scope.get(SCOPE_KEY, "-")


def _pick(scope: Scope) -> str:
    given = dict(scope.get("headers") or []).get(HEADER.lower().encode())
    if given is not None and _CLIENT_ID.fullmatch(given):
        return given.decode()
    return uuid.uuid4().hex


class RequestIds:
    """ASGI middleware: assign the request id (``scope[SCOPE_KEY]``) and add the header to
    the response. It must run outside every middleware that answers on its own (body
    limits, unencodable text), so their answers carry the id too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = scope[SCOPE_KEY] = _pick(scope)

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                message = {**message, "headers": headers + [(b"x-request-id", rid.encode())]}
            await send(message)

        await self.app(scope, receive, with_id)
