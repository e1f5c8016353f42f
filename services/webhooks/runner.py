"""Webhook fan-out service (placeholder until the webhooks issue): consumes lifecycle
events as group ``webhooks`` and commits, so its lag stays at zero."""
from __future__ import annotations

import asyncio

from shared import events as ev
from shared.consumer_loop import run_consumer


class WebhookService:
    def __init__(self, runtime):
        self.runtime = runtime

    async def handle(self, records) -> None:
        return None

    async def run(self, stop: asyncio.Event) -> None:
        await run_consumer(self.runtime.log.consumer([ev.Topic.EVENTS], "webhooks"), self.handle, stop)
