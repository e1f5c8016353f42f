"""The API role's parts, typed: ``ApiContext`` (services/api/context.py) builds them once per
process, so these are plain reads kept for the callers that name them."""
from __future__ import annotations

from services.api.context import ApiContext
from services.api.idempotency import Idempotency
from services.api.limits import RateLimiter


def limiter(rt: ApiContext) -> RateLimiter:
    """The per-service rate limits."""
    return rt.limits


def idempotency(rt: ApiContext) -> Idempotency:
    """The Idempotency-Key gate."""
    return rt.idempotency
