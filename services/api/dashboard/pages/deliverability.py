"""A service's Deliverability page (docs/analytics.md): per mailbox provider, delivered / deferred /
bounced / complaint counts and rates with queued→delivered latency, a chart per provider over
24h/7d/30d (the service page's SVG chart), the top bounce reasons, and the alerts raised."""
from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.dashboard import chart
from services.api.dashboard.pages.services import BUCKET
from services.api.dashboard.web import Caller, PageError, caller, page, service_of
from services.api.manage import services as api
from shared.store import insights

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)
CHARTS = 4  # providers charted (the largest); the table lists up to ROWS
ROWS = 10


def rates(totals: dict[str, int]) -> dict[str, float | None]:
    """Deferral rate (of attempts), bounce rate (of delivered + bounced), complaint rate (of delivered)."""
    attempts = totals["delivered"] + totals["bounced"]
    tries = attempts + totals["deferred"]
    return {"deferral_rate": totals["deferred"] / tries if tries else None,
            "bounce_rate": totals["bounced"] / attempts if attempts else None,
            "complaint_rate": totals["complained"] / totals["delivered"] if totals["delivered"] else None}


async def _insights(c: Caller, service_id: str, period: str) -> dict[str, Any] | None:
    """The page's numbers, or None when the analytics store is missing or down (the page says so)."""
    store = c.rt.store
    if store is None:
        return None
    try:
        grouped = await insights.grouped_stats(store, service_id, "provider", period, BUCKET[period], None, ROWS)
        latency = await insights.latency(store, service_id, period)
        reasons = await insights.bounce_reasons(store, service_id, period)
        alerts = await insights.active_alerts(store, service_id)
    except Exception:  # a read model: the page still renders
        log.exception("insights unavailable for the dashboard")
        return None
    by_provider = {p["provider"]: p for p in latency["providers"]}
    providers = [{"name": g["key"], "totals": g["totals"], **rates(g["totals"]), "latency": by_provider.get(g["key"]),
                  "stats": {"bucket": BUCKET[period], "period": period, "buckets": g["buckets"],
                            "totals": {k: g["totals"][k] for k in ("delivered", "deferred", "bounced", "complained")}}}
                 for g in grouped["groups"]]
    return {"providers": providers, "overall": latency["overall"], "reasons": reasons, "alerts": alerts}


@router.get("/services/{service_id}/deliverability")
async def deliverability(request: Request, service_id: str, period: str = "7d", c: Caller = Depends(caller)) -> Response:
    if period not in BUCKET:
        raise PageError(400, "period: one of 24h, 7d, 30d")
    svc = service_of(c, service_id)
    data = await _insights(c, svc.service_id, period)
    charts = [(p["name"], chart.svg(p["stats"])) for p in (data["providers"][:CHARTS] if data else [])
              if p["name"] != insights.OTHER]
    return page(request, "deliverability.html", c=c, svc=api.service_view(c.rt, svc), tab="deliverability",
                period=period, data=data, charts=charts)
