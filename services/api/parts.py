"""The API role's parts on the runtime, typed: ``app.attach_api_parts`` sets them once per
process (the runtime declares them optional because the other roles have none)."""
from __future__ import annotations

from services.api.idempotency import Idempotency
from services.api.limits import RateLimiter
from shared.runtime import Runtime


class PartsMissing(RuntimeError):
    """An API part was used before ``attach_api_parts``: a bug in how the process was built."""


def limiter(rt: Runtime) -> RateLimiter:
    """The per-service rate limits; raises ``PartsMissing`` before ``attach_api_parts``."""
    if rt.limits is None:
        raise PartsMissing("the rate limiter is not attached (services/api/app.py attach_api_parts)")
    return rt.limits


def idempotency(rt: Runtime) -> Idempotency:
    """The Idempotency-Key gate; raises ``PartsMissing`` before ``attach_api_parts``."""
    if rt.idempotency is None:
        raise PartsMissing("the idempotency gate is not attached (services/api/app.py attach_api_parts)")
    return rt.idempotency
