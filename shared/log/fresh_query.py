"""One request answering many callers, each with an answer fresher than its arrival."""
from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Generic, TypeVar

T = TypeVar("T")


class FreshQuery(Generic[T]):
    """Calls ``fetch`` on behalf of concurrent callers: a caller gets the result of a call that
    started after it arrived (so the answer reflects everything that happened before), and all
    callers that arrive while one call runs share the next one. Under load the cost is one
    call per call's duration, however many callers; a lone caller waits for one call.
    Exceptions reach every caller of that call."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]):
        self._fetch = fetch
        self._running: asyncio.Future[T] | None = None
        self._next: asyncio.Future[T] | None = None  # the callers waiting for the call after the running one

    async def __call__(self) -> T:
        if self._running is None:
            self._running = self._start()
            return await asyncio.shield(self._running)
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return await asyncio.shield(self._next)

    def _start(self) -> asyncio.Future[T]:
        task = asyncio.ensure_future(self._fetch())
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Future[T]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: a failure nobody awaited is not logged as "never retrieved"
        waiting, self._next = self._next, None
        self._running = None
        if waiting is None:
            return
        self._running = self._start()
        self._running.add_done_callback(lambda t: _settle(waiting, t))


def _settle(fut: asyncio.Future[Any], task: asyncio.Future[Any]) -> None:
    if fut.done():
        return
    if task.cancelled():
        fut.cancel()
    elif (error := task.exception()) is not None:
        fut.set_exception(error)
        fut.exception()  # retrieved here too: every waiter may have gone
    else:
        fut.set_result(task.result())
