"""The relay role in the test's own event loop: the real runner (consumer batches, ledger,
claims) over a real embedded log, delivering to an SMTP sink."""
from __future__ import annotations

import asyncio
import contextlib
import time

from services.relay.runner import Relay
from shared import events as ev
from shared.runtime import Runtime
from shared.settings import Settings
from tests.support.broker import free_port


@contextlib.asynccontextmanager
async def running_relay(data_dir, sink, **overrides):
    """Yields ``(runtime, relay)`` with ``Relay.run`` going; stopped (SIGTERM's path) after."""
    settings = Settings(data_dir=data_dir, secret_key="relay-tests", delivery="smarthost", smarthost=sink.address,
                        inbound_smtp_port=free_port(), submission_port=0, **overrides)
    rt = Runtime(settings)
    await rt.start(with_store=False)
    relay, stop = Relay(rt), asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield rt, relay
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await rt.close()


def request(email_id: str, *rcpts: str) -> ev.SendRequested:
    """A sandbox send request from the platform's sandbox sender (no domain, no DKIM)."""
    return ev.SendRequested(workspace_id="w", service_id="s", email_id=email_id, mode="sandbox", to=list(rcpts),
                            recipients=list(rcpts), subject="hi", text="body",
                            **{"from": "sandbox@postline.localhost"})


async def append_requests(rt: Runtime, reqs: list[ev.SendRequested]) -> None:
    await rt.log.append_many(ev.Topic.REQUESTS, [(r.email_id, ev.encode(r)) for r in reqs])


async def until(check, timeout: float = 30.0, what: str = "the condition"):
    """``tests.support.waiting.until`` for a test's event loop: polls without blocking it."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {value!r})")
        await asyncio.sleep(0.05)
    return value
