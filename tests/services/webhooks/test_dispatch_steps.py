"""One webhook delivery attempt in-process (arroyo's strategy tests are the model): the
event in, the signed request a real loopback receiver gets and the ``AttemptResult`` out."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import json

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from services.webhooks.dispatch import Clients, attempt, body_for
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


async def send(url: str, secrets=(SECRET,), allow_private: bool = True, timeout: float = 5, **client_options):
    clients = Clients(follow_redirects=False, trust_env=False, **client_options)
    try:
        return await attempt(clients, url, list(secrets), EVENT, allow_private, timeout=timeout)
    finally:
        await clients.aclose()


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


async def test_two_endpoints_on_one_address_do_not_share_a_tls_session(tmp_path):
    """Requests go to the address the SSRF check resolved, and httpx pools connections by
    address: a session whose certificate was verified for one endpoint's name must not carry
    another endpoint's request. The receiver's certificate names ``localhost`` only; the same
    receiver reached as ``127.0.0.1`` must fail verification, even right after ``localhost``."""
    import ssl

    from tests.support.cert_authority import CertAuthority

    ca = CertAuthority()
    rx = Receiver(tls_context=ca.server_context("localhost")[0])
    trust = ssl.create_default_context(cafile=str(ca.write(tmp_path / "ca.pem")))
    clients = Clients(follow_redirects=False, trust_env=False, verify=trust)
    try:
        first = await attempt(clients, f"https://localhost:{rx.port}/hook", [SECRET], EVENT, True, timeout=5)
        second = await attempt(clients, f"https://127.0.0.1:{rx.port}/hook", [SECRET], EVENT, True, timeout=5)
    finally:
        await clients.aclose()
        rx.stop()
    assert first.ok, first.error
    assert not second.ok and "CERTIFICATE_VERIFY_FAILED" in (second.error or ""), second
    assert len(rx.received) == 1


async def test_an_endpoint_that_drips_its_answer_is_cut_at_the_attempts_timeout():
    """An endpoint that sends a byte every half second would never trip a per-read timeout:
    the attempt as a whole ends at ``timeout``, an error, and what it read is at most 1 KB."""
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Slow\r\nContent-Length: 100000\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.5)
        writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await asyncio.wait_for(send(f"http://127.0.0.1:{port}/hook", timeout=2), 20)
    finally:
        server.close()
    assert result.status_code is None and result.error == "timed out after 2 s"
