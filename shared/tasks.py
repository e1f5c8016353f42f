"""Concurrent steps that must all end before their caller moves on."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable


async def gather_all(*steps: Awaitable[Any]) -> list[Any]:
    """``asyncio.gather(*steps)``, except that a failure is raised only once every step has
    ended. Plain ``gather`` raises at the first failure and leaves the others running: a batch
    retried meanwhile would overlap its own previous try (two deliveries of one request in
    flight), and whatever the caller does on the way out (a crash count lowered, a
    transaction's slot released) would happen while work is still in hand. Returns the
    results in order; raises the first failure (in the order of ``steps``)."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
