"""``POST /emails`` and ``POST /api/email/services/{id}/send`` answered in front of the FastAPI
app, when nothing about the request is unusual. FastAPI's routing, dependency injection and
response validation were ~35% of the API's CPU per send (issue 21), and Starlette's and
FastAPI's layers and the app's other middlewares around them ~14% more (issue 34;
docs/benchmarks.md).

Contract: the fast path answers only a send it can fully judge the way the FastAPI route
would — ``Content-Type: application/json``, a JSON object that ``SendEmail`` accepts, an
active service's key (``Api-Key`` or ``Authorization: Bearer``) and, on the service door,
the key's own service. Every other request goes on to the FastAPI app with its body intact,
before anything is taken or written, so its answer is the app's own: a missing or invalid
key, a body the schema refuses (unencodable text included: the app's 400 names the field),
another content type, a body over the size limit (the app's 413), a caller the throttle
blocks (the route's 429), and any request from resend-php (its error bodies have their own
shape). Like the route's ``service_key``, the fast path then catches up with the control log
(``auth.catch_up``: read-your-writes) and answers its 503 the same way. A send the fast path
takes is accepted by the same use case as the route (services/api/accept.py), inside the
app's own request-id, audit and access-log middlewares (the same classes, without the rest
of the stack); a refusal is rendered by the same mapping as the app's handler
(``errors.refusal_response``) and a fault by the same 500 (``errors.unexpected_response``), so
both paths answer alike (tested in tests/services/api/test_send_rules.py, the 500 in
test_bad_input.py). A send with a ``template`` is taken too: the accept core renders it
(services/api/template_send.py), as for the route."""
from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace
from typing import Any, NamedTuple

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.accept import accept
from services.api.auth import ServiceCaller, bearer_credential, catch_up, key_owner
from services.api.throttle import account_of, source_of
from services.api.actors import AuditContext
from services.api.errors import refusal_response, unexpected_response
from services.api.php_errors import is_php
from services.api.refusal import Refusal
from services.api.schemas import SendEmail, SendResult
from services.api.sending import Door
from services.api.request_ids import RequestIds
from services.api.request_log import ARRIVED, RequestLog
from services.api.text_checks import read_body
from services.api.context import ApiContext

_RESULT = TypeAdapter(SendResult)
_EMAILS = SimpleNamespace(path="/emails")  # scope["route"] for the access log (it reads .path)
_SERVICE_DOOR = SimpleNamespace(path="/api/email/services/{service_id}/send")
log = logging.getLogger(__name__)
FAULT_LOG_EVERY = 60.0  # seconds between two warnings of a judging fault
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


async def judge(rt: ApiContext, headers: dict[bytes, bytes], raw: bytes, service_id: str | None,
                client: str | None = None) -> Judged | Refusal | None:
    """The send when the fast path can take it; the catch-up's 503 when this process cannot
    read the control log up to its end; else None, for the app to answer. In the order of the
    route's ``service_key``: a missing key (401) or a caller the throttle blocks (429) is the
    app's before any catch-up, and so is a body the schema refuses (the app reads the JSON
    and refuses unencodable text before the route's dependencies run); then read-your-writes
    (a key made a moment ago on another process works), then the key's service."""
    if headers.get(b"content-type", b"").lower() != b"application/json":
        return None
    key = headers.get(b"api-key", b"").decode("latin-1") or bearer_credential(headers.get(b"authorization", b"").decode("latin-1"))
    if not key or rt.throttle.check(source_of(client), account_of(key)) is not None:
        return None
    if (body := send_body(raw)) is None:
        return None
    if refused := await catch_up(rt):
        return refused
    caller = key_owner(rt.control.state, key)
    if caller is None or caller.service.status == "disabled":
        return None
    if service_id is not None and caller.service.service_id != service_id:
        return None
    idempotency = headers.get(b"idempotency-key")
    return Judged(caller, body, idempotency.decode("latin-1") if idempotency is not None else None)


def send_body(raw: bytes) -> SendEmail | None:
    """The send ``raw`` holds, or None when the schema refuses it (unencodable text too)."""
    try:
        value = json.loads(raw)
        return SendEmail.model_validate(value) if isinstance(value, dict) else None
    except (ValueError, ValidationError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return None


class SendFastPath:
    """The ASGI app the HTTP server runs: sends it can take, the FastAPI ``app`` for the rest
    (see the module docstring)."""

    def __init__(self, app: ASGIApp, runtime: ApiContext | None, max_body_bytes: int):
        self.app, self.runtime, self.max_body_bytes = app, runtime, max_body_bytes
        # what the app's middleware stack adds to any answer, around the sends taken here
        self.taken: ASGIApp = RequestIds(AuditContext(RequestLog(self._answer_taken)))
        self._fault_logged_at = -FAULT_LOG_EVERY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """a send door, plain headers → the body (at most the limit) → judged → taken; else the app."""
        rt = self.runtime
        door = door_of(scope) if rt is not None else None
        if rt is None or door is None or not self._plain(scope):
            return await self.app(scope, receive, send)
        scope[ARRIVED] = time.perf_counter()
        raw, again = await read_body(receive, self.max_body_bytes)
        if raw is None:  # the client left, or the body is over the limit (the app's 413)
            return await self.app(scope, again, send)
        headers = dict(reversed(scope["headers"]))  # the first of a repeated header wins, as in Starlette
        client = scope.get("client")
        try:
            judged = await judge(rt, headers, raw, door[1], client[0] if client else None)
        except Exception:  # a bug in judging: the app gets the request whole (and answers a fault as its 500)
            self._log_fault()
            judged = None
        if judged is None:
            return await self.app(scope, again, send)
        scope[_TAKEN] = (door, judged, raw)
        await self.taken(scope, again, send)

    def _plain(self, scope: Scope) -> bool:
        """Not resend-php and no declared body over the limit (the app answers those; the
        headers read as the app's middlewares read them)."""
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        return not is_php(scope) and not (declared.isdigit() and int(declared) > self.max_body_bytes)

    def _log_fault(self) -> None:
        """A judging bug hands every send to the app (slower, still answered): say so, at most
        once every FAULT_LOG_EVERY seconds."""
        if time.monotonic() - self._fault_logged_at >= FAULT_LOG_EVERY:
            self._fault_logged_at = time.monotonic()
            log.warning("send fast path: judging a send failed; handed on to the app", exc_info=True)

    async def _answer_taken(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A taken send's answer; a fault before the answer started is the app's 500 (after it,
        the response is cut off, as in the app)."""
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self._take(scope, receive, sending)
        except Exception:
            if started:
                raise
            await unexpected_response(Request(scope, receive))(scope, receive, send)

    async def _take(self, scope: Scope, receive: Receive, send: Send) -> None:
        """name the route (access log) → the catch-up's refusal, or accept → the answer or the refusal's."""
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
        outcome = await accept(rt, svc, judged.body, door[0], judged.idempotency_key, raw, api_key=judged.caller.key)
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
