"""Audit entries (shared/audit.py): written by the control plane for changes someone makes,
read by another process from the log, secrets redacted, kept in a bounded, ordered index."""
from __future__ import annotations

from datetime import timedelta

import pytest

from shared import audit, events as ev
from shared.control.audit_index import AuditIndex
from shared.control.errors import ChangeRefused
from shared.crypto import hash_secret
from tests.shared.test_control_plane import new_service, two_processes

SECRET_FIELDS = {"rsa_private_sealed": "v1:RSA", "ed_private_sealed": "v1:ED"}


def domain(**fields) -> ev.DomainSaved:
    return ev.DomainSaved(**{"workspace_id": "w", "service_id": "s", "domain_id": "d", "domain": "acme.test",
                             "rsa_selector": "r", "rsa_public_b64": "PUB", "ed_selector": "e", "ed_public_b64": "EPUB",
                             "created_at": ev.utcnow(), **SECRET_FIELDS, **fields})


async def test_changes_made_by_someone_are_entries_another_process_reads(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        await a.save(new_service())  # no request, no actor (start-up, a bounce, a runner): no entry
        ctx = audit.Context(source="192.0.2.7", request_id="req-1", actor_type="api_key", actor_id="k1")
        with audit.acting(ctx):
            svc = await a.change(a.state.services["s"], name="renamed")
            await a.save(domain())
            await a.change(a.state.domains["d"], rsa_private_sealed="v1:NEW", verified=True)
        await b.catch_up()
        entries = list(b.state.audit.newest("w"))
        assert [e.action for e in entries] == ["domain.updated", "domain.created", "service.updated"]
        rename = entries[2]
        assert (rename.before, rename.after) == ({"name": "app"}, {"name": "renamed"}) and svc.name == "renamed"
        assert (rename.actor_type, rename.actor_id, rename.source, rename.request_id) == ("api_key", "k1", "192.0.2.7", "req-1")
        created, rotated = entries[1], entries[0]
        assert created.after["rsa_private_sealed"] == created.after["ed_private_sealed"] == "[redacted]"
        assert created.after["rsa_public_b64"] == "PUB"  # a public key is not a secret
        # a secret that changed says so, and shows neither value
        assert rotated.before == {"rsa_private_sealed": "[redacted]", "verified": False}
        assert rotated.after == {"rsa_private_sealed": "[redacted]", "verified": True}
        assert not any(b"v1:RSA" in ev.encode(e) or b"v1:NEW" in ev.encode(e) for e in entries)


async def test_a_change_refused_by_a_race_has_no_entry(tmp_path):
    async with two_processes(tmp_path) as (a, b):
        await a.save(new_service())
        await b.catch_up()
        stale = b.state.services["s"]
        with audit.acting(audit.Context(actor_type="admin_token", actor_id=hash_secret("t")[:12])):
            await a.change(a.state.services["s"], name="first")
            await b.catch_up()
            with pytest.raises(ChangeRefused):
                await b.change(stale, name="second")
        await a.catch_up()
        assert [(e.before, e.after) for e in a.state.audit.newest("w")] == [({"name": "app"}, {"name": "first"})]


def entry(i: int, workspace: str = "w") -> ev.AuditEntry:
    return ev.AuditEntry(workspace_id=workspace, time=ev.utcnow() + timedelta(seconds=i % 7), actor_type="api_key",
                         actor_id="k", action="service.updated", target_type="service", target_id=str(i))


def test_the_index_keeps_the_newest_per_workspace_in_time_order():
    index = AuditIndex(kept=5)
    made = [entry(i) for i in range(12)] + [entry(0, "other")]
    for e in reversed(made):  # any arrival order
        index.add(e)
    index.add(made[3])  # a copy is kept once
    expected = sorted(made[:12], key=lambda e: (e.time, e.id), reverse=True)[:5]
    assert [e.id for e in index.newest("w")] == [e.id for e in expected]
    assert [e.id for e in index.newest("w", index.position(expected[1].id))] == [e.id for e in expected[2:]]
    assert [e.id for e in index.newest("other")] == [made[12].id]
    assert index.position(sorted(made[:12], key=lambda e: (e.time, e.id))[0].id) is None  # aged out


def test_outside_a_request_there_is_no_actor():
    assert audit.current() is None
    audit.set_actor("api_key", "k")  # no request: nothing to name
    assert audit.current() is None
