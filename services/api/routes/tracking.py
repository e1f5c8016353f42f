"""Public tracking endpoints (docs/tracking.md): the open pixel, click redirects, unsubscribe.

The pixel and the redirects are served by ``HotPaths`` (plain ASGI, mounted in app.py);
the unsubscribe page and one-click POST are ordinary routes.

These are the hottest public URLs, so each is: verify the token (one HMAC, no lookup but
the in-memory control state) → build the event → append it (group-committed with the
other requests in flight) → answer. A token this installation did not sign, or of a
deleted service, answers 404 and never redirects.

Opens and clicks are idempotent per (email, recipient, link) within ``WINDOW`` seconds:
the event id is derived from them and the window's number, and a process appends an id
once, so a scanner's burst is one event (and a duplicate from another process is the same
event id, which consumers drop). If the log cannot take the event, the person still gets
the image or the redirect: tracking never stands between a reader and the link."""
from __future__ import annotations

import contextlib
import json
import logging
import string
import time
from collections import OrderedDict
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from services.api.context import ApiContext
from services.api.errors import error_body
from services.api.machine import is_machine
from shared import events as ev
from shared.control.errors import ControlBehind
from shared.tracking import Kind, Token, Tokens

log = logging.getLogger(__name__)
TrackingEvent = ev.Opened | ev.Clicked | ev.Unsubscribed  # what this route records
router = APIRouter(tags=["tracking"], include_in_schema=False)
WINDOW = 10
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_CACHE = {"Cache-Control": "no-store, no-cache, must-revalidate, private, max-age=0", "Pragma": "no-cache",
            "Expires": "0"}
# Location carries the original URL byte for byte; only what may not appear in a header
# (controls, space, non-ASCII) is percent-encoded, as a browser would send it anyway.
_LOCATION_SAFE = "".join(c for c in string.printable if c not in string.whitespace)
_NOT_FOUND = error_body(404, "token: unknown or invalid link")
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", **NO_CACHE}


class Recorder:
    """Appends tracking events, each id at most once per process (bounded memory)."""

    def __init__(self, rt: ApiContext, remember: int = 200_000):
        self.rt, self.remember = rt, remember
        self.tokens = Tokens(rt.settings.master_key)
        self._seen: OrderedDict[str, None] = OrderedDict()

    def fresh(self, event_id: str) -> bool:
        if event_id in self._seen:
            return False
        self._seen[event_id] = None
        if len(self._seen) > self.remember:
            self._seen.popitem(last=False)
        return True

    async def append(self, event: TrackingEvent, key: str) -> bool:
        try:
            await self.rt.log.append_many(ev.Topic.EVENTS, [(key, ev.encode(event))])
            return True
        except Exception:  # the log is unreachable: forget the id so a later request records it
            self._seen.pop(event.id, None)
            log.warning("could not record %s event %s", event.type, event.id, exc_info=True)
            return False


def recorder(request: Request) -> Recorder:
    return recorder_of(request.app.state.runtime)


def recorder_of(rt: ApiContext) -> Recorder:
    """The process's one Recorder (made on first use: its id memory is per process)."""
    if rt.tracking is None:
        rt.tracking = Recorder(rt)
    return rt.tracking


async def check(rec: Recorder, token: str, kind: Kind) -> tuple[Token, str] | None:
    """(token contents, workspace id) of a valid token of a live service, else None. A valid
    token of a service this process does not know catches up with the control log first (the
    service may be a moment old, made on another process); a known one costs no catch-up."""
    tok = rec.tokens.verify(token, kind)
    if tok is None:
        return None
    svc = rec.rt.control.state.services.get(tok.service_id)
    if svc is None:
        with contextlib.suppress(ControlBehind):  # cannot tell now: answered as unknown
            await rec.rt.control.catch_up()
        svc = rec.rt.control.state.services.get(tok.service_id)
    return (tok, svc.workspace_id) if svc else None


def _event(cls: type[TrackingEvent], tok: Token, workspace_id: str, event_id: str, **fields: Any) -> TrackingEvent:
    return cls(id=event_id, workspace_id=workspace_id, service_id=tok.service_id, email_id=tok.email_id,
               recipient=tok.recipient, **fields)


async def record_view(rec: Recorder, method: str, user_agent: str | None, tok: Token, workspace_id: str) -> None:
    """``opened`` or ``clicked``, once per (email, recipient, link) and window."""
    now = time.time()
    kind = "opened" if tok.kind == "open" else "clicked"
    event_id = ev.derived_id(tok.email_id, tok.recipient, kind, tok.link, int(now // WINDOW))
    if not rec.fresh(event_id):
        return
    machine = is_machine(user_agent, method, now - tok.issued, tok.kind)
    fields = {"user_agent": user_agent[:1000] if user_agent else None, "machine": machine,
              "time": datetime.fromtimestamp(now, timezone.utc)}
    if tok.kind == "click":
        fields["url"] = tok.url
    await rec.append(_event(ev.Opened if tok.kind == "open" else ev.Clicked, tok, workspace_id, event_id, **fields),
                     tok.email_id)


_JSON_404 = json.dumps(_NOT_FOUND).encode()
_PIXEL_HEADERS = [(b"content-type", b"image/gif"), (b"content-length", str(len(PIXEL)).encode()),
                  *((k.lower().encode(), v.encode()) for k, v in NO_CACHE.items())]
_404_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_JSON_404)).encode()),
                *((k.lower().encode(), v.encode()) for k, v in NO_CACHE.items())]
_302_HEADERS = [(b"content-length", b"0"), *((k.lower().encode(), v.encode()) for k, v in NO_CACHE.items())]


async def pixel(rec: Recorder, method: str, token: str, user_agent: str | None) -> tuple[int, list, bytes]:
    """The open pixel: a 1x1 transparent GIF, never cached; emits ``opened``."""
    found = await check(rec, token.removesuffix(".gif"), "open")
    if found is None:
        return 404, _404_HEADERS, _JSON_404
    await record_view(rec, method, user_agent, *found)
    return 200, _PIXEL_HEADERS, PIXEL


async def click(rec: Recorder, method: str, token: str, user_agent: str | None) -> tuple[int, list, bytes]:
    """A tracked link: 302 to the original URL (query and fragment kept); emits ``clicked``."""
    found = await check(rec, token, "click")
    if found is None:
        return 404, _404_HEADERS, _JSON_404
    await record_view(rec, method, user_agent, *found)
    return 302, [(b"location", quote(found[0].url, safe=_LOCATION_SAFE).encode()), *_302_HEADERS], b""


class HotPaths:
    """ASGI middleware answering ``GET|HEAD /t/o/…`` and ``/t/c/…`` itself, before FastAPI's
    routing, dependency injection and middleware stack (measured: about twice the requests
    per second; see docs/benchmarks.md). Everything else passes through."""

    ROUTES = {"/t/o/": pixel, "/t/c/": click}

    def __init__(self, app: ASGIApp, runtime: ApiContext | None):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        handler = self.ROUTES.get(path[:5])
        if handler is None or scope["method"] not in ("GET", "HEAD") or self.runtime is None:
            return await self.app(scope, receive, send)
        rec = recorder_of(self.runtime)
        agent = next((v for k, v in scope["headers"] if k == b"user-agent"), None)
        status, headers, body = await handler(rec, scope["method"], path[5:],
                                              agent.decode("latin-1") if agent is not None else None)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>{escape(title)}</title><body style='font:16px system-ui,sans-serif;max-width:32em;margin:4em auto;"
        f"padding:0 1em'><h1 style='font-size:1.3em'>{escape(title)}</h1>{body}</body></html>",
        status_code=status, headers=PAGE_HEADERS)


@router.get("/t/u/{token}")
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    """A confirmation page with a button; it never unsubscribes by itself (scanners follow links)."""
    found = await check(recorder(request), token, "unsubscribe")
    if found is None:
        return _page("This link is invalid", "<p>It may have been mistyped or cut.</p>", 404)
    form = (f"<p>Stop email to <b>{escape(found[0].recipient)}</b> from this sender?</p>"
            "<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
            "<button type=submit style='font-size:1em;padding:.5em 1.2em'>Unsubscribe</button></form>")
    return _page("Unsubscribe", form)


async def one_click(request: Request) -> bool:
    """True when the body is RFC 8058's ``List-Unsubscribe=One-Click`` (urlencoded or multipart)."""
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        return form.get("List-Unsubscribe") == "One-Click"
    body = await request.body()
    if len(body) > 4096:
        return False
    return parse_qs(body.decode("utf-8", "replace")).get("List-Unsubscribe") == ["One-Click"]


@router.post("/t/u/{token}")
async def unsubscribe(token: str, request: Request) -> Response:
    """RFC 8058 one-click: suppress the recipient (reason ``unsubscribe``), emit ``unsubscribed``."""
    rec = recorder(request)
    found = await check(rec, token, "unsubscribe")
    if found is None:
        return JSONResponse(_NOT_FOUND, status_code=404)
    if not await one_click(request):
        return JSONResponse(error_body(400, "List-Unsubscribe: the body must be List-Unsubscribe=One-Click"),
                            status_code=400)
    tok, workspace_id = found
    await suppress(rec, tok, workspace_id)
    ua = request.headers.get("user-agent")
    event = _event(ev.Unsubscribed, tok, workspace_id, ev.derived_id(tok.email_id, tok.recipient, "unsubscribed"),
                   user_agent=ua[:1000] if ua else None)
    if rec.fresh(event.id) and not await rec.append(event, tok.email_id):
        return JSONResponse(error_body(503, "the event log is unavailable; safe to retry"), status_code=503,
                            headers={"Retry-After": "1"})
    return _page("You are unsubscribed", f"<p>{escape(tok.recipient)} will get no more email from this sender.</p>")


async def suppress(rec: Recorder, tok: Token, workspace_id: str) -> None:
    """Add the recipient to the service's suppression list, unless it already is on it."""
    await rec.rt.control.suppress(workspace_id, tok.service_id, tok.recipient, "unsubscribe",
                                  "one-click List-Unsubscribe (RFC 8058)", tok.email_id)
