"""The accept core (services/api/accept.py) and its doors: every door counts its sends in
``postline_api_sends_total`` (the batch route too), and refusals are values with their code."""
from __future__ import annotations

from services.api.accept import Accepted, accept, accept_batch
from services.api.context import ApiContext
from services.api.refusal import Refusal
from services.api.schemas import SendEmail
from tests.support.inproc import api_runtime, ready_service

SEND = {"from": "a@acme.test", "to": ["ann@example.com"], "subject": "s", "text": "t"}


async def sends_total(admin) -> dict[str, float]:
    """``postline_api_sends_total`` by result, as /metrics serves it."""
    text = (await admin.http.get("/metrics")).text
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("postline_api_sends_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            totals[result] = float(line.split()[-1])
    return totals


async def test_the_batch_route_counts_its_sends(tmp_path):
    async with api_runtime(tmp_path, rate_per_minute=3) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        before = await sends_total(admin)
        unverified = {**SEND, "to": ["bob@example.com"]}  # refused before any counting: not a send
        items = [SEND, SEND, unverified, SEND, SEND]  # the 4th accepted one is over 3/minute
        r = await admin.http.post("/emails/batch", json=items, headers={"Api-Key": key, "x-batch-validation": "permissive"})
        assert r.status_code == 200, r.text
        assert [d["status"] for d in r.json()["data"]] == ["sent", "sent", "sent"]
        assert [(e["index"], e["message"].split(" ", 2)[:2]) for e in r.json()["errors"]] == [
            (2, ["[2].to:", "bob@example.com"]), (4, ["[4]", "rate"])]
        after = await sends_total(admin)
        assert after.get("accepted", 0) - before.get("accepted", 0) == 3
        assert after.get("rate_limited", 0) - before.get("rate_limited", 0) == 1


async def test_every_door_counts_alike(tmp_path):
    async with api_runtime(tmp_path) as (rt, admin):
        sid, key = await ready_service(rt, admin)
        before = (await sends_total(admin)).get("accepted", 0)
        assert (await admin.http.post("/emails", json=SEND, headers={"Api-Key": key})).status_code == 200
        assert (await admin.http.post(f"/api/email/services/{sid}/send", json=SEND,
                                      headers={"Authorization": f"Bearer {key}"})).status_code == 200
        assert (await admin.http.post("/emails/batch", json=[SEND], headers={"Api-Key": key})).status_code == 200
        assert (await sends_total(admin)).get("accepted", 0) - before == 3


async def test_accept_returns_values_with_codes(tmp_path):
    async with api_runtime(tmp_path, rate_per_day=1) as (rt, admin):
        sid, _ = await ready_service(rt, admin)
        svc = rt.control.state.services[sid]
        body = SendEmail.model_validate(SEND)
        api = ApiContext.of(rt)  # the API role's parts over the process's runtime
        first = await accept(api, svc, body, "emails", key="order-1", raw=b'{"a": 1}')
        assert isinstance(first, Accepted) and first.response["status"] == "sent"
        replay = await accept(api, svc, body, "emails", key="order-1", raw=b'{ "a" : 1 }')
        assert isinstance(replay, Accepted) and replay.response == first.response  # nothing new sent
        other = await accept(api, svc, body, "emails", key="order-1", raw=b'{"a": 2}')
        assert isinstance(other, Refusal) and (other.status, other.name) == (409, "invalid_idempotent_request")
        over = await accept(api, svc, body, "emails")
        assert isinstance(over, Refusal) and (over.status, over.name) == (429, "daily_quota_exceeded")
        assert over.limits is not None and over.retry_after == over.limits.retry_after
        unverified = SendEmail.model_validate({**SEND, "to": ["bob@example.com"]})
        outcomes = await accept_batch(api, svc, [unverified], "service")  # the service door drops it instead
        assert isinstance(outcomes, list) and isinstance(outcomes[0], Accepted)
        assert outcomes[0].response["status"] == "failed" and outcomes[0].response["dropped"][0]["reason"] == "sandbox"
