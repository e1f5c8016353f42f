"""Delivery outcomes as data, and the functions mapping SMTP results to them."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.relay.senders.smtp_client import SmtpError
from shared.consumer_loop import BatchLost
from shared.events import TlsUsed

ResultStatus = Literal["delivered", "deferred", "bounced"]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    status: ResultStatus
    smtp_code: int | None = None
    smtp_reply: str | None = None
    mx_host: str | None = None
    at: datetime | None = None  # when the outcome became final; its event's time
    retry_after: float | None = None  # seconds the server asked us to wait (a 4xx reply that says so)
    connect_error: bool = False  # no session: could not connect, or the server refused it before MAIL
    source_ip: str | None = None  # the local address the session left from (IP pools)
    tls: TlsUsed | None = None  # the session's TLS; None: plaintext (or no session)
    failure: str | None = None  # a failed outcome's reason when it is not the queue lifetime (crash_guard.py)


# "try again in 5 minutes", "retry after 300 seconds", "please retry in 2h": the forms MTAs use
_RETRY_AFTER = re.compile(r"(?:retry|try again)\s+(?:after|in)\s+(\d+(?:\.\d+)?)\s*"
                          r"(s|secs?|seconds?|m|mins?|minutes?|h|hours?)\b", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600}


def retry_after(reply: str | None) -> float | None:
    """Seconds a temporary-failure reply asks the client to wait, when it names a delay."""
    found = _RETRY_AFTER.search(reply or "")
    return float(found[1]) * _UNIT[found[2][0].lower()] if found else None


def from_reply(code: int, message: str, host: str | None = None) -> DeliveryResult:
    """2xx → delivered, 4xx → deferred, 5xx → bounced (hard or soft, and why: the bounced
    event's classification, services/relay/bounce_class.py). A 5xx is never retried, a
    mailbox-full one (5.2.2) included: it counts towards the soft-bounce rule instead."""
    if 200 <= code < 300:
        return DeliveryResult("delivered", code, message, host)
    if 500 <= code < 600:
        return DeliveryResult("bounced", code, message, host)
    return DeliveryResult("deferred", code, message, host, retry_after=retry_after(message))


def from_exception(exc: BaseException, host: str | None = None, connecting: bool = False) -> DeliveryResult:
    """Connection failures, refusals while connecting, drops and timeouts are temporary (the
    SMTP client reports a server's refusal of a message as a reply, never as an exception).
    ``connecting``: it happened before a transaction began (``connect_error``: the sender
    may try another address of the destination at once; nothing can have been delivered). A
    421 refusing the connection keeps its code: the provider throttles, which the shaper must
    see; other refusals while connecting (a failed login's 535) are about the connection, not
    a reply to the message, and have none."""
    message = exc.message if isinstance(exc, SmtpError) else f"{type(exc).__name__}: {exc}"
    code = 421 if isinstance(exc, SmtpError) and exc.code == 421 else None
    return DeliveryResult("deferred", code, message, host, retry_after=retry_after(message), connect_error=connecting)


class PartlySent(BatchLost):
    """``BatchLost`` in the middle of a message: some of its recipients got a server's reply
    (``results``, an earlier transaction or an earlier pass of the shaper) before the rest
    found the relay's batch given away. Their final outcomes are recorded and emitted (a
    relay that gets the partition back must not send to them again); nothing is scheduled
    or emitted for the rest, which the batch's new owner handles."""

    def __init__(self, results: dict[str, DeliveryResult]):
        super().__init__(f"the relay's batch was given away with {len(results)} of the message's recipients answered")
        self.results = results
