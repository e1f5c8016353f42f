"""Resend paths Postline does not offer: 404 ``not_found`` saying so, instead of a bare
"Not Found" (or a 405 where a path shares its prefix with one Postline has).

A fallback, never a route: the app's 404/405 handler asks ``refusal_for`` only when no route
matched the path (or only with another method; and ``GET /emails/{id}`` asks it before its
own 404, for ``/emails/metrics``), so a router added later — in any order —
is never shadowed by this list. To offer one of these paths, register its route: the
fallback then never sees it (remove its pattern here to keep the list honest)."""
from __future__ import annotations

import re

from services.api.refusal import Refusal

_RESOURCES = ("contacts", "audiences", "broadcasts", "segments", "topics", "contact-properties", "automations",
              "events", "logs", "inboxes", "oauth", "usage")
# (the path's pattern, what Resend calls it: ``{0}`` is the pattern's first group)
NOT_OFFERED = [
    (re.compile(rf"^/({'|'.join(map(re.escape, _RESOURCES))})(?:/.*)?$"), "{0}"),
    (re.compile(r"^/domains/(?:claim|[^/]+/claim(?:/verify)?)$"), "domain claims"),
    (re.compile(r"^/suppressions/batch(?:/.*)?$"), "batch suppressions"),
    (re.compile(r"^/emails/(metrics)(?:/.*)?$"), "emails {0}"),
    (re.compile(r"^/emails/[^/]+/(attachments|share)(?:/.*)?$"), "email {0}"),
]


def refusal_for(method: str, path: str) -> Refusal | None:
    """The 404 for a Resend path Postline does not offer; None for any other path."""
    for pattern, name in NOT_OFFERED:
        if found := pattern.match(path):
            return Refusal(404, f"Postline does not offer Resend's {name.format(*found.groups())} API "
                                f"({method} {path}); docs/compatibility.md lists what it offers", code="not_found")
    return None
