"""The relay's per-message work on each HTML shape, in-process (``--only message-build``): the
derived text part (``html_to_text``), quoted-printable, and the whole ``mime.build`` of the
message, as CPU microseconds per message (process time, best of 7 rounds). The end-to-end
section measures the installation; this one isolates what a change to MIME building moves."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

from services.relay.html_text import html_to_text
from services.relay.mime import _qp, build
from shared import events as ev
from tests.bench.shapes import SHAPES

ROUNDS = 7


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - start) / calls)
    return round(best * 1e6, 1)


def request_of(body: dict) -> ev.SendRequested:
    """The request the API would log for ``body`` (a shape's JSON, seed or Resend field names)."""
    to = [body["to"]] if isinstance(body["to"], str) else body["to"]
    return ev.SendRequested(id="e1", email_id="4f1c2b9e-0000-4000-8000-000000000001", time=datetime.now(timezone.utc),
                            workspace_id="w", service_id="s", mode="production", from_=body["from"], to=to,
                            recipients=to, subject=body["subject"], html=body.get("html") or body.get("message"),
                            text=body.get("text"))


def run() -> dict:
    out = {}
    for shape in SHAPES:
        body = shape.request(1, "acme.test")
        html = body.get("html") or body.get("message")
        if not html or body.get("attachments"):
            continue
        calls = max(20, 200_000 // len(html))
        req = request_of(body)
        out[shape.name] = {"html_bytes": len(html), "html_to_text_us": per_call_us(lambda: html_to_text(html), calls),
                           "quoted_printable_us": per_call_us(lambda: _qp(html), calls),
                           "whole_build_us": per_call_us(lambda: build(req, "acme.test"), calls)}
    return out
