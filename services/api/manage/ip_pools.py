"""Source IP pools (docs/delivery.md "Source IP pools"): pools of local addresses with an
EHLO name each, installation-wide (``ip_pool.saved`` control records), assigned to services
(``ip_pool_id`` of a service). Only an owner or admin of the default workspace (``shaping.refusal``).

A pool's view shows each address's warm-up day, today's cap and today's count per provider
(from the relays' shared shaping state, ``ApiContext.shaping``)."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from services.api.context import ApiContext
from services.api.manage import changed, deleted
from services.api.refusal import Refusal
from services.api.schemas import IpPoolCreate, IpPoolUpdate, PoolAddressInput
from services.relay.shaping import warmup
from shared import events as ev

MAX_POOLS = 100


def pool_view(rt: ApiContext, pool: ev.IpPoolSaved) -> dict[str, Any]:
    today = datetime.now(timezone.utc).date()
    sent = rt.shaping.sent_today(today.isoformat())
    return {"object": "ip_pool", "id": pool.pool_id, "name": pool.name, "created_at": pool.created_at.isoformat(),
            "warmup_schedule": list(warmup.schedule_of(pool)),
            "services": sorted(s.service_id for s in rt.control.state.services.values() if s.ip_pool_id == pool.pool_id),
            "addresses": [{"ip": a.ip, "ehlo_name": a.ehlo_name, "warm": a.warm, "added_at": a.added_at.isoformat(),
                           "warmup_day": warmup.day_of(a, today), "cap_today": warmup.cap(pool, a, today),
                           "sent_today": sent.get(a.ip, {})} for a in pool.addresses]}


def list_pools(rt: ApiContext) -> list[dict[str, Any]]:
    return [pool_view(rt, p) for p in sorted(rt.control.state.ip_pools.values(), key=lambda p: p.created_at)]


def find(rt: ApiContext, pool_id: str) -> ev.IpPoolSaved | Refusal:
    pool = rt.control.state.ip_pools.get(pool_id)
    return pool if pool is not None else Refusal(404, "IP pool not found")


def _addresses(given: list[PoolAddressInput], old: list[ev.PoolAddress]) -> list[ev.PoolAddress]:
    """An address kept keeps its warm-up start; a new one starts today."""
    since = {a.ip: a.added_at for a in old}
    now = ev.utcnow()
    return [ev.PoolAddress(ip=a.ip, ehlo_name=a.ehlo_name, warm=a.warm, added_at=since.get(a.ip, now)) for a in given]


async def create_pool(rt: ApiContext, ws: ev.WorkspaceSaved, body: IpPoolCreate) -> dict[str, Any] | Refusal:
    if len(rt.control.state.ip_pools) >= MAX_POOLS:
        return Refusal(400, f"at most {MAX_POOLS} IP pools")
    pool = ev.IpPoolSaved(workspace_id=ws.workspace_id, pool_id=ev.new_id(), name=body.name,
                          addresses=_addresses(body.addresses, []), warmup_schedule=body.warmup_schedule or [],
                          created_at=ev.utcnow())
    await rt.control.save(pool)
    return pool_view(rt, pool)


async def update_pool(rt: ApiContext, pool: ev.IpPoolSaved, body: IpPoolUpdate) -> dict[str, Any] | Refusal:
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.addresses is not None:
        changes["addresses"] = _addresses(body.addresses, pool.addresses)
    if "warmup_schedule" in body.model_fields_set:
        changes["warmup_schedule"] = body.warmup_schedule or []
    if not changes:
        return pool_view(rt, pool)
    updated = await changed(rt, pool, **changes)
    return updated if isinstance(updated, Refusal) else pool_view(rt, updated)


async def delete_pool(rt: ApiContext, pool: ev.IpPoolSaved) -> Refusal | None:
    if any(s.ip_pool_id == pool.pool_id for s in rt.control.state.services.values()):
        return Refusal(409, "the pool is assigned to a service; assign the service another pool first")
    return await deleted(rt, pool)
