"""Mailbox providers: which receiving organisation a destination belongs to, by its MX host.

Gmail's and Microsoft's customers' domains (Google Workspace, Microsoft 365) have MX hosts
under the provider's own names, so grouping by MX host suffix puts ``acme.com`` hosted at
Google under ``google`` with ``gmail.com``: that is how the providers count a sender's
reputation and rates, so it is how Postline shapes delivery and groups its stats.

A destination whose MX matches no entry is its own provider: ``other:<domain>`` (the
recipient domain; per-domain shaping and stats, as before providers existed).

The built-in table is ``BUILT_IN``; an operator adds or overrides entries with
``POSTLINE_PROVIDERS`` (``name=suffix,suffix;name=suffix``) or the shaping API — every
function here takes the extra entries as an argument so the caller decides where they
come from."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

BUILT_IN: dict[str, tuple[str, ...]] = {
    "google": ("google.com", "googlemail.com", "gmail-smtp-in.l.google.com"),
    "microsoft": ("outlook.com", "hotmail.com", "protection.outlook.com", "olc.protection.outlook.com"),
    "yahoo": ("yahoodns.net", "yahoo.com", "aol.com", "aol.net"),
    "apple": ("icloud.com", "mail.icloud.com", "me.com"),
    "yandex": ("yandex.net", "yandex.ru"),
    "mailru": ("mail.ru",),
    "gmx": ("gmx.net", "gmx.com", "web.de", "kundenserver.de"),
    "comcast": ("comcast.net",),
    "zoho": ("zoho.com", "zoho.eu"),
    "proton": ("protonmail.ch", "proton.me"),
    "fastmail": ("messagingengine.com",),
    "mimecast": ("mimecast.com",),
    "proofpoint": ("pphosted.com", "ppe-hosted.com"),
}
"""Provider name → MX host suffixes (a host matches a suffix when it equals it or ends with
``.`` + it). Sources: the providers' published MX records."""

OTHER = "other"


def suffix_table(extra: Mapping[str, Sequence[str]] | None = None) -> list[tuple[str, str]]:
    """``(suffix, provider)`` pairs, longest suffix first (the most specific entry wins);
    ``extra`` entries replace a built-in provider's suffixes or add a provider."""
    merged = {**BUILT_IN, **{k: tuple(v) for k, v in (extra or {}).items()}}
    pairs = [(s.lower().strip(".").strip(), name) for name, suffixes in merged.items() for s in suffixes]
    return sorted((p for p in pairs if p[0]), key=lambda p: -len(p[0]))


_DEFAULT = suffix_table()


def provider_of(mx_host: str | None, domain: str, table: list[tuple[str, str]] | None = None) -> str:
    """The provider of a destination: by its MX host's suffix, else ``other:<domain>``
    (also when the MX host is unknown, e.g. the DNS lookup failed)."""
    host = (mx_host or "").lower().rstrip(".")
    if host:
        for suffix, name in table if table is not None else _DEFAULT:
            if host == suffix or host.endswith("." + suffix):
                return name
    return f"{OTHER}:{domain.lower()}"


def parse_setting(text: str) -> dict[str, tuple[str, ...]]:
    """``POSTLINE_PROVIDERS``: ``name=suffix,suffix;name=suffix`` → ``{name: suffixes}``.
    Raises ``ValueError`` naming the bad entry."""
    out: dict[str, tuple[str, ...]] = {}
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        name, sep, suffixes = entry.partition("=")
        parts = tuple(s.strip().lower() for s in suffixes.split(",") if s.strip())
        if not sep or not name.strip() or not parts:
            raise ValueError(f"provider entry {entry!r} is not name=suffix[,suffix…]")
        out[name.strip().lower()] = parts
    return out
