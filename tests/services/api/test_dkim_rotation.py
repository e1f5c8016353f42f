"""DKIM rotation end to end (real DNS server, real SMTP sink, dkimpy verifying): a new set
listed as pending while signing stays on the old one; signing moves once DNS shows the new
records; mail signed with either set verifies during the overlap; the replaced set is
listed as retiring, then no longer after its grace period; scheduled rotation and its setting.
A custom return path: its records listed and verified, VERP on it, a DSN to it processed."""
from __future__ import annotations

import asyncio
import logging
import re
import smtplib
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from services.api import dkim_rotation, domains
from shared import events as ev
from shared.control.errors import ControlBehind
from shared.settings import Settings
from tests.services.api.dashboard.support import sign_in
from tests.support.broker import free_port
from tests.support.dns_server import DnsServer
from tests.support.inproc import api_runtime
from tests.support.postline import ADMIN_TOKEN, Api, PostlineProcess, dkim_results, production_service
from tests.support.smtp_sink import SmtpSink

BODY = {"from": "Acme <hello@acme.test>", "to": "ann@example.com", "subject": "Keys", "text": "body"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    dns, sink, inbound = DnsServer().start(), SmtpSink().start(), free_port()
    proc = PostlineProcess(tmp_path_factory.mktemp("dkim") / "data", env={
        "POSTLINE_DNS_SERVER": dns.address, "POSTLINE_DELIVERY": "smarthost", "POSTLINE_SMARTHOST": sink.address,
        "POSTLINE_WORKERS": "2", "POSTLINE_INBOUND_SMTP_PORT": str(inbound)}).start()
    api = Api(proc.url)
    sid, key = production_service(api, dns)
    did = api.admin("GET", f"/api/email/services/{sid}/domains").json()["data"][0]["id"]
    api.inbound = inbound
    yield api, dns, sink, sid, key, did
    proc.stop()
    sink.stop()
    dns.stop()


def dkim_names(view: dict, dkim_set: str) -> list[str]:
    return [r["name"] for r in view["records"] if r.get("dkim_set") == dkim_set]


def sent(api: Api, sink: SmtpSink, key: str) -> bytes:
    email_id = api.send(key, BODY).json()["id"]
    return sink.wait_for(lambda m: email_id.encode() in m.data)[0].data


def selectors(raw: bytes) -> set[str]:
    head = raw.split(b"\r\n\r\n", 1)[0]
    return {s.decode() for s in re.findall(rb"DKIM-Signature:[^\r]*(?:\r\n[ \t][^\r]*)*", head) for s in
            re.findall(rb"\bs=([a-z0-9]+);", s)}


def test_rotation_end_to_end_with_both_signatures_verifying_during_the_overlap(world):
    api, dns, sink, sid, key, did = world
    path = f"/api/email/services/{sid}/domains/{did}"
    before = api.admin("GET", path).json()
    old = {n.split(".")[0] for n in dkim_names(before, "current")}
    first = sent(api, sink, key)
    assert selectors(first) == old and dkim_results(first, dns.address) == [True, True]

    rotated = api.admin("POST", f"{path}/rotate-dkim")
    assert rotated.status_code == 200
    new_records = [r for r in rotated.json()["records"] if r.get("dkim_set") == "pending"]
    new = {r["name"].split(".")[0] for r in new_records}
    assert len(new) == 2 and not new & old and dkim_names(rotated.json(), "current") == dkim_names(before, "current")
    again = api.admin("POST", f"{path}/rotate-dkim")
    assert again.status_code == 409 and "already pending" in again.json()["error"]

    # not yet in DNS: verifying keeps the old set, and mail stays signed with it
    assert api.admin("POST", f"{path}/verify").json()["verified"] is True
    assert selectors(sent(api, sink, key)) == old

    for r in new_records:
        dns.txt(r["name"], r["value_strings"])
    moved = api.admin("POST", f"{path}/verify").json()
    assert moved["verified"] is True
    assert {n.split(".")[0] for n in dkim_names(moved, "current")} == new
    assert {n.split(".")[0] for n in dkim_names(moved, "retiring")} == old and moved["retiring_until"]
    assert not dkim_names(moved, "pending")
    # one set retires at a time: a second switch now would drop the old set's records early
    early = api.admin("POST", f"{path}/rotate-dkim")
    assert early.status_code == 409 and "retiring until" in early.json()["error"]

    later = sent(api, sink, key)  # any API process: the change is on the control log
    assert selectors(later) == new and dkim_results(later, dns.address) == [True, True]
    assert dkim_results(first, dns.address) == [True, True]  # the old set is still published

    async def domain_page() -> str:
        async with httpx.AsyncClient(base_url=api.http.base_url) as http:
            await sign_in(http, ADMIN_TOKEN)
            return (await http.get(f"/services/{sid}/domains/{did}")).text

    page = asyncio.run(domain_page())
    assert all(s in page for s in old | new) and "retiring: keep until" in page


def test_rotation_schedule_is_set_and_validated(world):
    api, _, _, sid, _, did = world
    path = f"/api/email/services/{sid}/domains/{did}"
    assert api.admin("PATCH", path, json={"dkim_rotation_days": 180}).json()["dkim_rotation_days"] == 180
    bad = api.admin("PATCH", path, json={"dkim_rotation_days": 1})
    assert bad.status_code in (400, 422) and "dkim_rotation_days" in bad.json()["error"]
    assert "dkim_rotation_days" not in api.admin("PATCH", path, json={"dkim_rotation_days": None}).json()


def _domain(**fields) -> ev.DomainSaved:
    keys = {"rsa_selector": "plra", "rsa_private_sealed": "x", "rsa_public_b64": "AAAA",
            "ed_selector": "plea", "ed_private_sealed": "x", "ed_public_b64": "BBBB"}
    return ev.DomainSaved(workspace_id="w", service_id="s", domain_id="d", domain="acme.test",
                          created_at=ev.utcnow() - timedelta(days=200), **{**keys, **fields})


def test_schedule_due_and_the_retiring_set_is_dropped_after_its_grace():
    now = ev.utcnow()
    assert not dkim_rotation.due(_domain(), now)
    assert dkim_rotation.due(_domain(dkim_rotation_days=180), now)
    assert not dkim_rotation.due(_domain(dkim_rotation_days=180, dkim_rotated_at=now - timedelta(days=10)), now)
    assert not dkim_rotation.due(_domain(dkim_rotation_days=180, pending_dkim={"rsa_selector": "x"}), now)
    retiring = {"rsa_selector": "plrold", "rsa_public_b64": "CCCC", "ed_selector": "pleold", "ed_public_b64": "DDDD"}
    assert not dkim_rotation.due(_domain(dkim_rotation_days=1, retiring_dkim=retiring,
                                         retiring_until=now + timedelta(days=1)), now)  # one set retires at a time
    assert dkim_rotation.due(_domain(dkim_rotation_days=1, retiring_dkim=retiring,
                                     retiring_until=now - timedelta(days=1)), now)
    settings = Settings()
    listed = domains.records(_domain(retiring_dkim=retiring, retiring_until=now + timedelta(days=1)), settings)
    assert [r["dkim_set"] for r in listed if r["record"] == "DKIM"] == ["current", "current", "retiring", "retiring"]
    gone = domains.records(_domain(retiring_dkim=retiring, retiring_until=now - timedelta(seconds=1)), settings)
    assert [r["dkim_set"] for r in gone if r["record"] == "DKIM"] == ["current", "current"]


def test_a_custom_return_path_is_listed_verified_used_and_its_bounces_processed(world):
    api, dns, sink, sid, key, did = world
    path = f"/api/email/services/{sid}/domains/{did}"
    bad = api.admin("PATCH", path, json={"return_path": "-em"})
    assert bad.status_code == 400 and "return_path" in bad.json()["error"]
    view = api.admin("PATCH", path, json={"return_path": "em"}).json()
    assert view["return_path"] == "em"
    by_kind = {r["record"]: r for r in view["records"]}
    assert by_kind["MX"]["name"] == by_kind["RETURN_PATH"]["name"] == "em.acme.test"
    dns.txt("em.acme.test", by_kind["RETURN_PATH"]["value"])
    dns.mx("em.acme.test", (10, by_kind["MX"]["value"].split()[1]))
    checks = {c["record"]: c["status"] for c in api.admin("POST", f"{path}/verify").json()["checks"]}
    assert checks["RETURN_PATH"] == "found" and checks["MX"] == "found"

    email_id = api.send(key, {**BODY, "to": "gone@example.com"}).json()["id"]
    verp = sink.wait_for(lambda m: email_id.encode() in m.data)[0].mail_from
    assert verp.startswith("bounces+") and verp.endswith("@em.acme.test")
    api.wait_status(key, email_id, "gone@example.com", "delivered")
    dsn = (Path(__file__).resolve().parents[2] / "data" / "bounces" / "postfix_hard.eml").read_bytes() \
        .replace(b"BOUNCE_TO", verp.encode()).replace(b"RCPT", b"gone@example.com") \
        .replace(b"MSGID", f"{email_id}@acme.test".encode())
    deadline = time.monotonic() + 20
    while True:
        try:
            with smtplib.SMTP("127.0.0.1", api.inbound, timeout=10) as s:
                s.sendmail("", [verp], dsn)
            break
        except smtplib.SMTPDataError as exc:  # 451 until analytics has the message, as MTAs retry
            if exc.smtp_code != 451 or time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    api.wait_status(key, email_id, "gone@example.com", "bounced")
    assert api.admin("PATCH", path, json={"return_path": None}).json()["return_path"] == "bounces"


async def test_the_scheduled_duty_starts_a_due_rotation_then_switches_once_dns_shows_it(tmp_path, monkeypatch, caplog):
    dns = DnsServer().start()
    try:
        async with api_runtime(tmp_path, dns_server=dns.address) as (rt, admin):
            sid = await admin.service()
            d = (await admin("POST", f"/api/email/services/{sid}/domains", json={"domain": "acme.test"})).json()
            assert (await admin("PATCH", f"/api/email/services/{sid}/domains/{d['id']}",
                                json={"dkim_rotation_days": 30})).status_code == 200
            await dkim_rotation.rotation_pass(rt)
            assert rt.control.state.domains[d["id"]].pending_dkim is None  # 30 days have not passed
            await rt.control.change(rt.control.state.domains[d["id"]], dkim_rotated_at=ev.utcnow() - timedelta(days=31))
            await dkim_rotation.rotation_pass(rt)
            started = rt.control.state.domains[d["id"]]
            assert started.pending_dkim and started.rsa_selector == d["records"][1]["name"].split(".")[0]
            for r in domains.records(started, rt.settings):
                if r.get("dkim_set") == "pending":
                    dns.txt(r["name"], r["value_strings"])
            await dkim_rotation.rotation_pass(rt)
            switched = rt.control.state.domains[d["id"]]
            assert switched.rsa_selector == started.pending_dkim["rsa_selector"] and switched.pending_dkim is None
            assert switched.retiring_dkim["rsa_selector"] == started.rsa_selector
            assert switched.retiring_until - switched.dkim_rotated_at == dkim_rotation.GRACE

            async def unreachable(*args, **changes):
                raise ControlBehind("the event log is unavailable")

            monkeypatch.setattr(rt.control, "change", unreachable)  # a due rotation the log cannot take
            rt.control.state.domains[d["id"]] = switched.model_copy(update={
                "retiring_until": ev.utcnow() - timedelta(days=1), "dkim_rotated_at": ev.utcnow() - timedelta(days=31)})
            with caplog.at_level(logging.WARNING, logger="services.api.dkim_rotation"):
                await dkim_rotation.rotation_pass(rt)  # does not raise: the housekeeping role goes on
            assert "this pass failed" in caplog.text
    finally:
        dns.stop()
