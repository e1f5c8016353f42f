"""Kafka claims (services/api/idempotency/log_claims.py) on the tansu broker: two replicas'
gates agree through the topic, and a claim that lands after the key's done record is
followed by a copy of the done, so the key's newest record (what compaction keeps) holds
its answer."""
from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from services.api.idempotency import Idempotency
from services.api.idempotency import claims as c
from services.api.idempotency.log_claims import LogClaims
from shared.events import Topic
from shared.log.kafka import KafkaLog
from shared.settings import Settings

pytestmark = pytest.mark.kafka


@pytest.fixture
async def replicas(tansu):
    logs = [KafkaLog(Settings(kafka_bootstrap=tansu.bootstrap, kafka_idempotence=False)) for _ in range(2)]
    for lg in logs:
        await lg.start()
    claims = [LogClaims(lg, reach_timeout=10) for lg in logs]
    yield claims
    for cl, lg in zip(claims, logs):
        await cl.close()
        await lg.close()


async def test_two_replicas_send_once(replicas):
    gates, calls = [Idempotency(cl, lease=10) for cl in replicas], []

    async def produce(held):
        calls.append(1)
        await asyncio.sleep(0.1)
        return {"id": "e1"}

    key = f"k-{uuid.uuid4()}"
    answers = await asyncio.gather(*(gates[i % 2].run("svc", key, "h", produce) for i in range(10)))
    assert len(calls) == 1 and all(a == {"id": "e1"} for a in answers)


async def test_a_claim_after_done_is_followed_by_the_done(replicas, tansu):
    a, b = replicas
    key = f"k-{uuid.uuid4()}"
    await a.change("svc", key, c.claim("owner-a", "h", 1000.0, 10))
    await a.change("svc", key, c.done("owner-a", "h", 1001.0, {"id": "e1"}, 1000.0))
    late = await b.change("svc", key, c.claim("owner-b", "h", 1002.0, 10))  # lands after the done
    assert late.owner == "owner-a" and late.response == {"id": "e1"}
    newest = await newest_record(tansu.bootstrap, f"svc|{key}")
    assert newest["kind"] == "done" and newest["response"] == {"id": "e1"} and newest["since"] == 1000.0


async def newest_record(bootstrap: str, key: str) -> dict:
    log = KafkaLog(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False))
    await log.start()
    try:
        found = []
        for part in range(await log.partition_count(Topic.IDEMPOTENCY)):
            async for batch in log.scan(Topic.IDEMPOTENCY, part):
                found += [json.loads(r.value) for r in batch if r.key == key]
        return found[-1]
    finally:
        await log.close()
