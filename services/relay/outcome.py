"""Delivery outcomes as data, and the one function mapping SMTP results to them."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.relay.senders.smtp_client import SmtpError


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    status: Literal["delivered", "deferred", "bounced"]
    smtp_code: int | None = None
    smtp_reply: str | None = None
    mx_host: str | None = None
    at: datetime | None = None  # when the outcome became final; its event's time


def from_reply(code: int, message: str, host: str | None = None) -> DeliveryResult:
    """2xx → delivered, 4xx → deferred, 5xx → bounced (hard or soft, and why: the bounced
    event's classification, services/relay/bounce_class.py). A 5xx is never retried, a
    mailbox-full one (5.2.2) included: it counts towards the soft-bounce rule instead."""
    if 200 <= code < 300:
        return DeliveryResult("delivered", code, message, host)
    if 500 <= code < 600:
        return DeliveryResult("bounced", code, message, host)
    return DeliveryResult("deferred", code, message, host)


def from_exception(exc: BaseException, host: str | None = None) -> DeliveryResult:
    """Connection failures, refusals while connecting and timeouts are temporary (the SMTP
    client reports a server's refusal of a message as a reply, never as an exception)."""
    message = exc.message if isinstance(exc, SmtpError) else f"{type(exc).__name__}: {exc}"
    return DeliveryResult("deferred", None, message, host)
