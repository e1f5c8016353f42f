"""The "Shaping" page: each mailbox provider's limits and live state, and the source IP
pools with each address's warm-up (services/api/manage/shaping.py, ip_pools.py). Owner and
admin only (``installation``, services/api/access.py): it is the whole installation's."""
from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from services.api.dashboard.web import Caller, page, require
from services.api.manage import ip_pools
from services.api.manage import shaping as api

router = APIRouter(include_in_schema=False)


@router.get("/shaping")
async def shaping_page(request: Request, c: Caller = Depends(require("installation"))) -> Response:
    return page(request, "shaping.html", c=c, providers=api.view(c.rt)["data"], pools=ip_pools.list_pools(c.rt),
                tab="shaping")
