"""Was an open or a click made by a machine rather than a person? (``machine`` on events)

Mail privacy proxies and security scanners fetch images and follow links with no person
behind them; ``machine: true`` lets people count human opens and clicks. The rules
(documented in docs/tracking.md), any one of which marks the request as a machine:

1. A ``HEAD`` request (link checkers; a browser following a link sends GET).
2. No User-Agent at all.
3. Apple Mail Privacy Protection: the user agent is exactly ``Mozilla/5.0`` (Apple's
   proxy sends this and nothing else; no browser does).
4. A known proxy or scanner token in the user agent (case-insensitive): Gmail's image
   proxy (``GoogleImageProxy``, ``ggpht.com``), Yahoo's (``YahooMailProxy``), Microsoft's
   link scanners (``BingPreview``, ``Microsoft Office Existence Discovery``, ``ms-office``
   with ``Discovery``), Barracuda, Mimecast, Proofpoint, Cisco IronPort, Trend Micro,
   FireEye, Symantec/Broadcom scanners, and generic automation (``bot``, ``crawler``,
   ``spider``, ``HeadlessChrome``, ``python-``, ``curl/``, ``wget``, ``Go-http-client``,
   ``okhttp``, ``Java/``, ``libwww``, ``axios``, ``node-fetch``).
5. A click within ``FAST_CLICK_SECONDS`` of the message being built: no person reads a
   message and clicks in that time; scanners at the receiving gateway do.

A proxy fetch still means the message was delivered (and, for Gmail, usually opened), so the
event is kept, flagged, never dropped."""
from __future__ import annotations

import re

FAST_CLICK_SECONDS = 2
APPLE_MPP_AGENT = "Mozilla/5.0"
_TOKENS = re.compile(
    r"googleimageproxy|ggpht\.com|yahoomailproxy|bingpreview|existence discovery|ms-office.*discovery|barracuda|"
    r"mimecast|proofpoint|ironport|trend ?micro|fireeye|symantec|broadcom|forcepoint|sophos|"
    r"bot\b|bot/|crawler|spider|headlesschrome|python-|curl/|wget|go-http-client|okhttp|java/|libwww|axios|"
    r"node-fetch",
    re.IGNORECASE)


def is_machine(user_agent: str | None, method: str = "GET", seconds_since_build: float | None = None,
               kind: str = "open") -> bool:
    """True when the rules above say a machine made this request (pure; no I/O)."""
    if method == "HEAD" or not user_agent:
        return True
    ua = user_agent.strip()
    if ua == APPLE_MPP_AGENT or _TOKENS.search(ua):
        return True
    return kind == "click" and seconds_since_build is not None and seconds_since_build < FAST_CLICK_SECONDS
