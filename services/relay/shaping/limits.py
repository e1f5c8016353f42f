"""Limits per mailbox provider: built-in defaults, the operator's overrides (the control
log's ``shaping.saved`` record), and ``other:<domain>`` from POSTLINE_MX_CONCURRENCY /
POSTLINE_MX_RATE.

Recipients per transaction are not a limit of their own: a message's recipients at one domain
share a transaction (at most the API's 50 per send; a tracked copy goes alone, docs/delivery.md),
and the rate counts transactions (messages, as receivers count them), so ten recipients in one
transaction take one of the provider's turns."""
from __future__ import annotations

from collections.abc import Mapping

from shared import events as ev
from shared.providers import OTHER
from shared.settings import Settings

# Conservative published or commonly observed values for a sender with a fresh reputation;
# the adaptive back-off (store.py) lowers them further when a provider says so.
BUILT_IN: dict[str, ev.ProviderLimits] = {
    "google": ev.ProviderLimits(max_connections=20, rate=20.0, per_connection=100),
    "microsoft": ev.ProviderLimits(max_connections=10, rate=10.0, per_connection=30),
    "yahoo": ev.ProviderLimits(max_connections=5, rate=5.0, per_connection=20),
    "apple": ev.ProviderLimits(max_connections=5, rate=5.0, per_connection=50),
    "yandex": ev.ProviderLimits(max_connections=5, rate=5.0, per_connection=50),
    "mailru": ev.ProviderLimits(max_connections=5, rate=5.0, per_connection=50),
    "gmx": ev.ProviderLimits(max_connections=5, rate=5.0, per_connection=50),
    "comcast": ev.ProviderLimits(max_connections=3, rate=3.0, per_connection=20),
}


def other_default(settings: Settings) -> ev.ProviderLimits:
    """The limits of a provider without an entry (and of every ``other:<domain>``)."""
    return ev.ProviderLimits(max_connections=settings.mx_concurrency, rate=settings.mx_rate, per_connection=100)


def limits_for(provider: str, overrides: Mapping[str, ev.ProviderLimits], settings: Settings) -> ev.ProviderLimits:
    """The limits that hold for ``provider``: the operator's entry for it, else the built-in
    one, else the operator's ``other`` entry (for any ``other:<domain>``), else the default."""
    if provider in overrides:
        return overrides[provider]
    if provider in BUILT_IN:
        return BUILT_IN[provider]
    return overrides.get(OTHER) or other_default(settings)


def table(overrides: Mapping[str, ev.ProviderLimits], settings: Settings) -> dict[str, ev.ProviderLimits]:
    """Every named provider's limits and ``other``'s, as ``GET /api/email/shaping`` shows them."""
    names = sorted({*BUILT_IN, *overrides} - {OTHER})
    return {**{n: limits_for(n, overrides, settings) for n in names}, OTHER: limits_for(f"{OTHER}:", overrides, settings)}
