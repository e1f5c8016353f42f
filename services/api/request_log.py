"""One structured log line per API request, at info level (logger ``postline.access``).

Fields: ``method``, ``route`` (the template, e.g. ``/api/email/services/{service_id}``, so no
id or address from the URL leaks and lines group by endpoint), ``status``, ``ms`` (time to the
response's first byte), ``request_id`` (the ``X-Request-Id`` the client got), ``client`` (peer IP, for abuse and rate-limit questions), and where
known ``service_id`` and ``email_id``. Never logged: query strings, headers (keys, tokens,
cookies), bodies, recipient addresses — an operator finds a message by its id, and the id
leads to everything else through the authenticated API. Unmatched paths log as ``route: null``.
The tracking pixel and click redirects (``tracking.HotPaths``, in front of this middleware)
are not logged: they are public, high-volume, and each one is already an event on the log."""
from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.api.request_ids import request_id_of

log = logging.getLogger("postline.access")
ARRIVED = "postline.arrived"  # scope key: perf_counter() when the request reached the first handler in front of this one


class RequestLog:
    """Pure ASGI middleware (no body buffering, ~10 µs a request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        start = scope.get(ARRIVED) or time.perf_counter()
        status = 500  # what the client gets if the app dies before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            log.info("request", extra={"fields": access_fields(scope, status, start)})


def access_fields(scope: Scope, status: int, start: float) -> dict[str, Any]:
    route = scope.get("route")
    state = scope.get("state") or {}
    fields = {"method": scope["method"], "route": getattr(route, "path", None), "status": status,
              "request_id": request_id_of(scope),
              "ms": round((time.perf_counter() - start) * 1000, 2),
              "client": (scope.get("client") or (None,))[0]}
    service_id = state.get("service_id") or (scope.get("path_params") or {}).get("service_id")
    if service_id:
        fields["service_id"] = service_id
    if state.get("email_id"):
        fields["email_id"] = state["email_id"]
    return fields
