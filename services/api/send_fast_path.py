"""``POST /emails`` and ``POST /api/email/services/{id}/send`` answered in front of the FastAPI
app, when nothing about the request is unusual. FastAPI's routing, dependency injection and
response validation were ~35% of the API's CPU per send (issue 21), and the Starlette/FastAPI
layers and the app's own middlewares around them another ~20% (issue 34; docs/benchmarks.md).

Contract: the fast path answers only a send it can fully judge the way the FastAPI route
would — ``Content-Type: application/json``, a JSON object that ``SendEmail`` accepts, an
active service's key (``Api-Key`` or ``Authorization: Bearer``) and, on the service door,
the key's own service. Every other request goes on to the FastAPI app with its body intact,
before anything is taken or written, so its answer is the app's own: a missing or invalid
key, a body the schema refuses, another content type, a body over the size limit (the app's
413), text that cannot be encoded (the app's 400 naming the field), a caller the throttle
blocks (the route's 429), and any request from resend-php (its error bodies have
their own shape). A send the fast path takes is accepted by the same use case as the route
(services/api/accept.py), inside the app's own request-id, audit and access-log middlewares
(the same classes, without the rest of the stack); a refusal is rendered by the same mapping
as the app's handler (``errors.refusal_response``) and a fault by the same 500
(``errors.unexpected_response``), so both paths answer byte for byte alike (tested in
tests/services/api/test_send_rules.py). A send with a ``template`` is taken too: the accept
core renders it (services/api/template_send.py), as for the route. Like the route's
``service_key``, the fast path first catches up with the control log (``auth.catch_up``:
read-your-writes) and answers its 503 the same way."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.accept import accept
from services.api.auth import ServiceCaller, bearer_credential, catch_up, key_owner
from services.api.throttle import account_of, source_of
from services.api.actors import AuditContext
from services.api.errors import refusal_response, unexpected_response
from services.api.php_errors import is_php_agent
from services.api.refusal import Refusal
from services.api.schemas import SendEmail, SendResult
from services.api.sending import Door
from services.api.request_ids import RequestIds
from services.api.request_log import ARRIVED, RequestLog
from services.api.text_checks import SURROGATE_ESCAPE, read_body
from services.api.context import ApiContext

_RESULT = TypeAdapter(SendResult)
_EMAILS = SimpleNamespace(path="/emails")  # scope["route"] for the access log (it reads .path)
_SERVICE_DOOR = SimpleNamespace(path="/api/email/services/{service_id}/send")
_TAKEN = "postline.send"  # scope key: the judged send, from the front to the handler inside the middlewares


class Judged(NamedTuple):
    """A send the fast path can take: who sends what, with which Idempotency-Key."""

    caller: ServiceCaller
    body: SendEmail
    idempotency_key: str | None


def door_of(scope: Scope) -> tuple[Door, str | None] | None:
    """("emails", None) or ("service", service_id) for a send request, else None."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path = scope["path"]
    if path == "/emails":
        return "emails", None
    parts = path.split("/")  # "", "api", "email", "services", id, "send"
    if len(parts) == 6 and parts[1:4] == ["api", "email", "services"] and parts[5] == "send" and parts[4]:
        return "service", parts[4]
    return None


def judge(rt: ApiContext, headers: dict[bytes, bytes], raw: bytes, service_id: str | None,
          client: str | None = None) -> Judged | None:
    """The send when the fast path can take it, else None (also when ``client``'s address
    or the key's account is blocked by the throttle)."""
    if headers.get(b"content-type", b"").lower() != b"application/json":
        return None
    key = headers.get(b"api-key", b"").decode("latin-1") or bearer_credential(headers.get(b"authorization", b"").decode("latin-1"))
    if not key or rt.throttle.check(source_of(client), account_of(key)) is not None:
        return None
    caller = key_owner(rt.control.state, key)
    if caller is None or caller.service.status == "disabled":
        return None
    if service_id is not None and caller.service.service_id != service_id:
        return None
    try:
        value = json.loads(raw)
        body = SendEmail.model_validate(value) if isinstance(value, dict) else None
    except (ValueError, ValidationError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None
    idempotency = headers.get(b"idempotency-key")
    return Judged(caller, body, idempotency.decode("latin-1") if idempotency is not None else None) if body else None


class SendFastPath:
    """The ASGI app the HTTP server runs: sends it can take, the FastAPI ``app`` for the rest
    (see the module docstring)."""

    def __init__(self, app: ASGIApp, runtime: ApiContext | None, max_body_bytes: int):
        self.app, self.runtime, self.max_body_bytes = app, runtime, max_body_bytes
        # what the app's middleware stack adds to any answer, around the sends taken here
        self.taken: ASGIApp = RequestIds(AuditContext(RequestLog(self._send)))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """door and headers plain → body (bounded, encodable) → catch up → judge → taken; else the app."""
        rt = self.runtime
        door = door_of(scope) if rt is not None else None
        if rt is None or door is None:
            return await self.app(scope, receive, send)
        headers = dict(reversed(scope["headers"]))  # the first of a repeated header wins, as in Starlette
        if not self._plain(headers):
            return await self.app(scope, receive, send)
        scope[ARRIVED] = time.perf_counter()
        raw, again = await read_body(receive, self.max_body_bytes)
        if raw is None or SURROGATE_ESCAPE.search(raw):
            return await self.app(scope, again, send)
        client = scope.get("client")
        try:
            # read-your-writes first: a key made a moment ago on another process works
            refused = await catch_up(rt)  # a 503 is answered here: the route would wait for the log again
            judged = refused or judge(rt, headers, raw, door[1], client[0] if client else None)
        except Exception:  # a fault while judging: the app meets it again and answers its 500
            judged = None
        if judged is None:
            return await self.app(scope, again, send)
        scope[_TAKEN] = (door, judged, raw)
        await self.taken(scope, again, send)

    def _plain(self, headers: dict[bytes, bytes]) -> bool:
        """Not resend-php and no declared body over the limit (the app answers those)."""
        declared = headers.get(b"content-length", b"0")
        too_large = declared.isdigit() and int(declared) > self.max_body_bytes
        return not too_large and not is_php_agent(headers.get(b"user-agent", b""))

    async def _send(self, scope: Scope, receive: Receive, send: Send) -> None:
        """name the route (access log) → accept → the answer, the refusal's, or the 500 of a fault."""
        rt = self.runtime
        assert rt is not None
        door, judged, raw = scope.pop(_TAKEN)
        scope["route"] = _EMAILS if door[0] == "emails" else _SERVICE_DOOR
        if door[1] is not None:
            scope["path_params"] = {"service_id": door[1]}
        if isinstance(judged, Refusal):  # the control log could not be caught up with
            return await _refuse(scope, receive, send, judged)
        svc = judged.caller.service
        state = scope.setdefault("state", {})
        state["service_id"] = svc.service_id
        try:
            outcome = await accept(rt, svc, judged.body, door[0], judged.idempotency_key, raw,
                                   api_key=judged.caller.key)
        except Exception:
            return await unexpected_response(Request(scope, receive))(scope, receive, send)
        if isinstance(outcome, Refusal):
            return await _refuse(scope, receive, send, outcome)
        state["email_id"] = outcome.email_id
        await _answer(send, outcome.response, outcome.limits.headers())


async def _answer(send: Send, result: dict[str, Any], rate_headers: dict[str, str]) -> None:
    """200 with the ``SendResult`` body as the route's response model serialises it."""
    payload = _RESULT.dump_json(_RESULT.validate_python(result), by_alias=True)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json"),
                            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rate_headers.items())]})
    await send({"type": "http.response.body", "body": payload})


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    response = refusal_response(Request(scope, receive), refusal)
    await response(scope, receive, send)
