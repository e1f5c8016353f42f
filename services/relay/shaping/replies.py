"""Which replies mean "you send too fast" (throttling) and which are policy blocks.

Throttling: any 421; an enhanced status 4.7.x (Gmail's 4.7.28 and 4.7.0, Microsoft's
4.7.500 "Server busy", Yahoo's TS0x); the providers' known texts. Mail waits and the
provider's rate backs off. Policy block: a 5.7.x reply (blocked for reputation, policy,
authentication): a spike of them pauses the provider (the mail waits; the ones refused are
final for their recipient, as any 5xx)."""
from __future__ import annotations

import re
from typing import Literal

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
THROTTLE_TEXTS = ("try again later", "rate limit", "rate-limit", "too many connections", "too many messages",
                  "server busy", "temporarily deferred", "throttl", "unusual rate", "exceeded the maximum")

Kind = Literal["throttle", "block"]


def classify(code: int | None, text: str | None) -> Kind | None:
    """``throttle``, ``block`` or None (any other reply, or no reply)."""
    if code is None:
        return None
    message = (text or "").lower()
    enhanced = _ENHANCED.search(message)
    if code == 421 or (400 <= code < 500 and (
            (enhanced is not None and enhanced.group(1, 2) == ("4", "7")) or any(t in message for t in THROTTLE_TEXTS))):
        return "throttle"
    if 500 <= code < 600 and enhanced is not None and enhanced.group(1, 2) == ("5", "7"):
        return "block"
    return None
