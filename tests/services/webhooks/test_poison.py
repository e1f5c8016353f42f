"""The webhook consumer on a record that decodes but that no step can handle (a step raises
InvalidRecord): it is dead-lettered with the error and its offset, and the rest of the batch
is queued."""
from __future__ import annotations

import time

from services.webhooks.runner import WebhookService
from shared import events as ev
from tests.support.outbox import due
from tests.support.inproc import api_runtime


async def test_a_replay_that_cannot_be_queued_is_dead_lettered_and_the_rest_goes_on(tmp_path):
    async with api_runtime(tmp_path) as (rt, _):
        bad = ev.WebhookReplay(workspace_id="w", service_id="s", webhook_id="wh-1", events=[{"type": "sent"}])  # no id
        good = ev.WebhookReplay(workspace_id="w", service_id="s", webhook_id="wh-1", events=[{"id": "e1", "type": "sent"}])
        bad_at = await rt.log.append(ev.Topic.EVENTS, "wh-1", ev.encode(bad))
        await rt.log.append(ev.Topic.EVENTS, "wh-1", ev.encode(good))
        reader = rt.log.consumer([ev.Topic.EVENTS], None)
        await reader.start()
        records = [r for r in await reader.poll(timeout=1) if r.key == "wh-1"]
        await reader.close()
        service = WebhookService(rt)
        try:
            await service.guard.guarded(service.handle)(records)  # what run_consumer does per batch
            assert [d.event["id"] for d in due(service.outbox, time.time() + 1)] == ["e1"]
        finally:
            service.outbox.close()
        dead = rt.log.consumer([ev.Topic.DEAD_LETTER], None)
        await dead.start()
        [letter] = await dead.poll(timeout=1)
        await dead.close()
        assert letter.value == records[0].value
        assert letter.headers["source"] == f"{ev.Topic.EVENTS}/{bad_at[0]}/{bad_at[1]}"
        assert letter.headers["error"].startswith("InvalidRecord: a replayed event has no id") and letter.headers["group"] == "webhooks"
