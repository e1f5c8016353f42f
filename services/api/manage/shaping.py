"""Shaping per mailbox provider, installation-wide (docs/delivery.md "Shaping"):
the operator's limits (one ``shaping.saved`` control record, so every relay and API process
reads the same) and each provider's live state from the relays' shared shaping state
(the data dir's file; on Kafka what the relays publish, ``ApiContext.shaping``).

Only a workspace ``owner`` or ``admin`` may read or change it: the limits apply to every
service of the installation."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.api import access
from services.api.access import Actor
from services.api.context import ApiContext
from services.api.refusal import Refusal
from services.api.schemas import MAX_RECIPIENTS
from services.relay.shaping import limits as provider_limits
from services.relay.shaping.port import ProviderView
from shared import events as ev
from shared.providers import OTHER

RECIPIENTS_PER_TRANSACTION = MAX_RECIPIENTS  # a message's recipients at one domain share a transaction (docs/delivery.md)


def refusal(actor: Actor) -> Refusal | None:
    """None when ``actor`` may see and change the installation's shaping and IP pools."""
    return access.refusal(actor, "installation")


def _when(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat() if epoch else None


def _limits_view(lim: ev.ProviderLimits) -> dict[str, Any]:
    return {**lim.model_dump(), "recipients_per_transaction": RECIPIENTS_PER_TRANSACTION}


def _state_view(configured: ev.ProviderLimits, live: ProviderView | None) -> dict[str, Any]:
    rate = live.rate if live is not None and live.rate is not None else configured.rate
    paused = live is not None and live.paused_until > 0
    state = "paused" if paused else "backing_off" if live is not None and live.backing_off else "normal"
    return {"current_rate": rate, "state": state, "paused_until": _when(live.paused_until) if live else None,
            "connections": live.connections if live else 0, "queued": live.queued if live else 0,
            "last_reply": live.last_reply if live else None,
            "last_reply_at": _when(live.last_reply_at) if live else None}


def view(rt: ApiContext) -> dict[str, Any]:
    """Every named provider (and ``other``) with its configured limits, whether the operator
    set them, and its live state from the hosts' own addresses (``source_ip`` null); then
    each ``other:<domain>`` and each provider from a pool's address (``source_ip``: every
    address of a pool has the provider's limits, shaper.shaping_key) that has live state."""
    saved = rt.control.state.shaping
    overrides = saved.providers if saved else {}
    live = {v.provider: v for v in rt.shaping.views()}
    rows = []
    for name, lim in provider_limits.table(overrides, rt.settings).items():
        rows.append({"provider": name, "source_ip": None, "configured": _limits_view(lim), "custom": name in overrides,
                     **_state_view(lim, live.get(name))})
    for key, state in live.items():
        name, _, source_ip = key.partition("@")
        if name.startswith(f"{OTHER}:") or source_ip:
            lim = provider_limits.limits_for(name, overrides, rt.settings)
            rows.append({"provider": name, "source_ip": source_ip or None, "configured": _limits_view(lim),
                         "custom": name in overrides, **_state_view(lim, state)})
    return {"object": "shaping", "data": rows}


async def save(rt: ApiContext, ws: ev.WorkspaceSaved, providers: dict[str, ev.ProviderLimits]) -> dict[str, Any]:
    """Replace the operator's limits with ``providers`` (an empty map: the built-in ones)."""
    await rt.control.save(ev.ShapingSaved(workspace_id=ws.workspace_id, providers=providers))
    return view(rt)
