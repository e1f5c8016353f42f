"""Text that cannot be encoded: JSON admits ``"\\udfff"`` (an unpaired UTF-16 surrogate),
Python decodes it into a ``str``, and it only fails later, when the event or the message
is serialised as UTF-8. These checks find it at the door and name the field, so it is a
400 and never a 5xx "safe to retry" that a client would retry forever.

``RejectUnencodable`` applies to every JSON request body; a top-level array (``/emails/batch``)
is left to its route, which judges each item on its own (``SendEmail`` runs
``check_encodable`` itself)."""
from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.errors import error_body

# A \u escape of a surrogate code point (D800-DFFF) in the raw JSON: the only way JSON can
# carry one. Its absence proves the body clean without parsing it twice.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class UnencodableText(ValueError):
    """``str(exc)`` is the API error: ``<field>: ...``."""


def _encodable(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_unencodable(value: Any, path: str = "") -> str | None:
    """The path (``text``, ``headers.X-A``, ``attachments[0].filename``) of the first string,
    key included, that is not valid Unicode text; ``None`` when there is none."""
    if isinstance(value, str):
        return None if _encodable(value) else (path or "body")
    if isinstance(value, dict):
        for k, v in value.items():
            here = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and not _encodable(k):
                return path or "body"
            found = first_unencodable(v, here)
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = first_unencodable(v, f"{path}[{i}]")
            if found:
                return found
    return None


def message_for(field: str) -> str:
    return f"{field}: contains an unpaired UTF-16 surrogate, which is not text (it cannot be encoded as UTF-8)"


def check_encodable(value: Any) -> None:
    """Raise ``UnencodableText`` naming the first field that holds unencodable text."""
    found = first_unencodable(value)
    if found:
        raise UnencodableText(message_for(found.replace("from_", "from")))


class RejectUnencodable:
    """ASGI middleware: a JSON body (an object) holding unencodable text → 400 naming the field."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        body, again = await read_body(receive)
        field = _unencodable_field(body) if body is not None else None
        if field:
            return await _bad_request(send, message_for(field))
        await self.app(scope, again, send)


def _unencodable_field(body: bytes) -> str | None:
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        value = json.loads(body)
    except ValueError:
        return None  # not JSON: the route answers that
    if not isinstance(value, dict):
        return None
    return first_unencodable(value)


async def read_body(receive: Receive, limit: int | None = None) -> tuple[bytes | None, Receive]:
    """The whole request body, or None when the client went away first or the body grew past
    ``limit`` bytes (reading stops there); and a ``receive`` that gives the app the same
    messages again, then the client's own stream. For the middlewares that must see a body
    before the app does (this one, the send fast path)."""
    seen: list[Message] = []
    more, size = True, 0
    while more:
        message = await receive()
        seen.append(message)
        if message["type"] != "http.request":
            return None, _replay(seen, receive)
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            return None, _replay(seen, receive)
        more = message.get("more_body", False)
    body = b"".join(m.get("body", b"") for m in seen)
    return body, _replay([{"type": "http.request", "body": body, "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """The buffered messages again, then the client's own stream (which reports a disconnect)."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


async def _bad_request(send: Send, error: str) -> None:
    body = json.dumps(error_body(400, error)).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
