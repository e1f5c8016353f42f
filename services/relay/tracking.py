"""Per-recipient tracking of one message (docs/tracking.md), applied in the MIME step, before signing.

A tracked message is built once per recipient, because each recipient's links, pixel and
List-Unsubscribe carry that recipient's own signed tokens. An untracked message (all three
options off) never comes here and stays byte-identical to what it was without tracking.

- track_clicks: every http(s) link of the HTML part → ``/t/c/<token>`` (services/relay/rewrite.py)
- track_opens: a 1x1 image ``/t/o/<token>`` at the end of the HTML part
- list_unsubscribe: ``List-Unsubscribe: <…/t/u/<token>>`` and
  ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058), inside DKIM's ``h=``;
  with a sending domain also ``<mailto:unsubscribe+<verp token>@bounces.<domain>>``, which
  the inbound listener takes (services/relay/inbound/server.py)
The text part keeps the original URLs: when the sender gave none, it is derived from the
original HTML, not from the rewritten one."""
from __future__ import annotations

import time
from functools import lru_cache

from services.relay.mime import html_to_text
from services.relay.rewrite import rewrite
from shared import events as ev
from shared.settings import Settings
from shared.tracking import Tokens, link

ONE_CLICK = "List-Unsubscribe=One-Click"


def wanted(req: ev.SendRequested) -> bool:
    return req.track_opens or req.track_clicks or req.list_unsubscribe


@lru_cache(maxsize=4)
def tokens_for(master_key: bytes) -> Tokens:
    return Tokens(master_key)


def base_url(settings: Settings, domain: ev.DomainSaved | None) -> str:
    """Where tracking links point: the sending domain's own tracking host (a CNAME to this
    installation, served over https) when it has one, else POSTLINE_PUBLIC_URL."""
    host = getattr(domain, "tracking_host", None) if domain else None
    return f"https://{host}" if host else settings.base_url


def personalize(req: ev.SendRequested, rcpt: str, tokens: Tokens, base: str, issued: int | None = None,
                mailto: str | None = None) -> tuple[ev.SendRequested, dict[str, str]]:
    """The request as ``rcpt``'s copy is built (HTML rewritten, text kept) and the extra
    headers of that copy; ``mailto`` (an address the inbound listener takes) joins the
    https link in List-Unsubscribe, after it (RFC 2369: the first is preferred)."""
    issued = int(time.time()) if issued is None else issued
    make = lambda kind, i=0, url="": tokens.make(kind, req.email_id, req.service_id or "-", rcpt, i, url, issued)  # noqa: E731
    html, text = req.html, req.text
    if html is not None and (req.track_opens or req.track_clicks):
        link_for = (lambda i, url: link(base, "click", make("click", i, url))) if req.track_clicks else None
        pixel = link(base, "open", make("open")) if req.track_opens else None
        source, html = html, rewrite(html, link_for, pixel)
        if text is None:
            text = html_to_text(source)
    headers: dict[str, str] = {}
    if req.list_unsubscribe:
        value = f"<{link(base, 'unsubscribe', make('unsubscribe'))}>" + (f", <mailto:{mailto}>" if mailto else "")
        headers = {"List-Unsubscribe": value, "List-Unsubscribe-Post": ONE_CLICK}
    return req.model_copy(update={"html": html, "text": text}), headers
