"""One webhook delivery attempt in-process (arroyo's strategy tests are the model): the
event in, the signed request a real loopback receiver gets and the ``AttemptResult`` out."""
from __future__ import annotations

import base64
import json

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.webhooks.dispatch import attempt, body_for
from tests.support.broker import free_port
from tests.support.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
EVENT = {"id": "evt-1", "v": 1, "time": "2026-01-01T00:00:00Z", "workspace_id": "w", "type": "delivered",
         "service_id": "s", "email_id": "m1", "recipient": "ann@example.com", "smtp_code": 250}


@pytest.fixture
def receiver(request):
    rx = Receiver(**getattr(request, "param", {}))
    yield rx
    rx.stop()


async def send(url: str, secrets=(SECRET,), allow_private: bool = True):
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False) as client:
        return await attempt(client, url, list(secrets), EVENT, allow_private, timeout=5)


def test_the_body_is_the_event_without_its_envelope_fields():
    body = json.loads(body_for(EVENT))
    assert body == {"type": "delivered", "created_at": "2026-01-01T00:00:00Z",
                    "data": {"service_id": "s", "email_id": "m1", "recipient": "ann@example.com", "smtp_code": 250}}


async def test_a_2xx_is_ok_and_signed_with_every_active_secret(receiver):
    result = await send(receiver.url, secrets=(SECRET, OLD_SECRET))
    assert result.ok and result.status_code == 200 and result.error is None and result.latency_ms >= 0
    [req] = receiver.received
    headers = {k: req["headers"][k] for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    assert headers["webhook-id"] == "evt-1" and len(headers["webhook-signature"].split(" ")) == 2
    for secret in (SECRET, OLD_SECRET):  # either secret verifies during a rotation
        assert Webhook(secret).verify(req["body"], headers)["data"]["email_id"] == "m1"


@pytest.mark.parametrize("receiver", [{"statuses": [503], "headers": {"Retry-After": "120"}}], indirect=True)
async def test_a_503_is_not_ok_and_carries_retry_after(receiver):
    result = await send(receiver.url)
    assert not result.ok and result.status_code == 503 and result.retry_after == 120


async def test_a_private_destination_is_refused_before_any_request(receiver):
    result = await send(receiver.url, allow_private=False)
    assert result.status_code is None and result.error.startswith("refused:") and receiver.received == []


async def test_a_closed_port_is_an_error_result_not_an_exception():
    result = await send(f"http://127.0.0.1:{free_port()}/hook")  # nothing listens there
    assert result.status_code is None and not result.ok and result.error
