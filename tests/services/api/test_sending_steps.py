"""The API's send preparation in-process (Postal's processor spec is the model): a body and
the control state in, a request event or a ``Refusal`` value out — no HTTP, no subprocess."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from services.api.refusal import Refusal
from services.api.schemas import SendEmail
from services.api.limits import RateLimiter
from services.api.sending import LOG_DOWN, admit_requests, prepare
from shared.quota.sqlite import SqliteQuota
from services.api.submission import replies
from shared import events as ev
from shared.control.state import ControlState
from shared.log.sqlite import SqliteLog
from shared.settings import Settings

NOW = ev.utcnow()
ANN, BOB, EVE = "ann@example.com", "bob@example.com", "eve@example.com"


def service(**over) -> ev.ServiceSaved:
    return ev.ServiceSaved(workspace_id="w", service_id="s", name="app", created_at=NOW, **over)


def runtime(tmp_path, *events: ev.Event):
    """The control state after ``events``, read up to offset 7 of control partition 0."""
    state = ControlState()
    for e in events:
        state.apply(e)
    return SimpleNamespace(control=SimpleNamespace(state=state, position=lambda: {0: 7}),
                           settings=Settings(data_dir=tmp_path))


def verified_sandbox(email: str) -> ev.SandboxRecipientSaved:
    return ev.SandboxRecipientSaved(workspace_id="w", service_id="s", recipient_id=email, email=email,
                                    verified=True, created_at=NOW)


def verified_domain(name: str) -> ev.DomainSaved:
    return ev.DomainSaved(workspace_id="w", service_id="s", domain_id="d1", domain=name, rsa_selector="r",
                          rsa_private_sealed="-", rsa_public_b64="-", ed_selector="e", ed_private_sealed="-",
                          ed_public_b64="-", verified=True, created_at=NOW)


def body(**over) -> SendEmail:
    return SendEmail.model_validate({"from": "Acme <hello@acme.test>", "to": [ANN], "subject": "hi", "text": "t", **over})


def test_a_disabled_service_is_a_403_refusal_value(tmp_path):
    refused = prepare(runtime(tmp_path), service(status="disabled"), body(), "emails")
    assert refused == Refusal(403, "the service is disabled")
    assert replies.refusal(refused) == "550 5.7.1 the service is disabled"


def test_an_unverified_sandbox_recipient_is_refused_naming_the_field(tmp_path):
    rt = runtime(tmp_path, verified_sandbox(ANN))
    refused = prepare(rt, service(), body(to=[ANN, BOB]), "emails")
    assert isinstance(refused, Refusal) and (refused.status, refused.field) == (400, "to")
    assert refused.text.startswith(f"to: {BOB} is not a verified sandbox recipient")


def test_the_service_door_drops_it_instead(tmp_path):
    rt = runtime(tmp_path, verified_sandbox(ANN))
    draft, req = prepare(rt, service(), body(to=[ANN, BOB]), "service")
    assert req.recipients == [ANN] and [(d.recipient, d.reason) for d in req.dropped] == [(BOB, "sandbox")]
    assert req.mode == "sandbox" and req.from_ == "Acme <sandbox@postline.localhost>" and req.reply_to == ["Acme <hello@acme.test>"]


def test_production_on_a_verified_domain_keeps_the_from_and_drops_suppressed(tmp_path):
    suppressed = ev.SuppressionSaved(workspace_id="w", service_id="s", email=EVE, reason="hard_bounce", created_at=NOW)
    rt = runtime(tmp_path, verified_domain("acme.test"), suppressed)
    draft, req = prepare(rt, service(mode="production"), body(to=[ANN], cc=[EVE]), "emails", "id-1")
    assert (req.email_id, req.mode, req.sending_domain, req.from_) == ("id-1", "production", "acme.test", "Acme <hello@acme.test>")
    assert req.recipients == [ANN] and [(d.recipient, d.reason) for d in req.dropped] == [(EVE, "suppressed")]
    assert req.control_position == {0: 7}  # the position the decision rests on: a relay behind it waits


async def test_append_is_durable_or_a_503_refusal_never_an_exception(tmp_path):
    log = SqliteLog(tmp_path / "log.sqlite3", partitions=1)
    await log.start()
    draft, req = prepare(runtime(tmp_path, verified_sandbox(ANN)), service(), body(), "emails")
    limiter = RateLimiter(SqliteQuota(log))
    rt = SimpleNamespace(log=log, limits=limiter, settings=Settings(data_dir=tmp_path))
    take = await limiter.take_for("s", sandboxed=True)
    [decision] = await admit_requests(rt, [take], [req])
    assert decision.allowed and decision.limit == 50  # the sandbox day is the tightest window
    consumer = log.consumer([ev.Topic.REQUESTS], None)
    await consumer.start()
    assert [ev.decode(r.value).email_id for r in await consumer.poll(timeout=0.5)] == [req.email_id]
    await consumer.close()
    await log.close()
    refused = await admit_requests(rt, [take], [req])  # the log is gone
    assert refused == LOG_DOWN and (refused.status, refused.retry_after) == (503, 1) and refused.cause is not None
    assert replies.refusal(refused).startswith("451 4.3.0 the event log is unavailable")


@pytest.mark.parametrize("status, code", [(400, "550 5.7.1"), (403, "550 5.7.1"), (429, "452 4.7.1"), (503, "451 4.3.0")])
def test_every_refusal_maps_to_an_smtp_reply_of_the_same_permanence(status, code):
    assert replies.refusal(Refusal(status, "why\r\nnot", "to")) == f"{code} to: why not"
