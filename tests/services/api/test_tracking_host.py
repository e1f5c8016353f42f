"""A domain's own tracking host: set at creation or by PATCH, shown as a CNAME among the
records, validated to be under the domain; the relay builds links on it."""
from __future__ import annotations

from types import SimpleNamespace

from services.relay.tracking import base_url
from shared import events as ev
from tests.support.inproc import api_runtime


async def test_tracking_host_set_changed_removed_and_validated(tmp_path):
    async with api_runtime(tmp_path, public_url="https://mail.postline.example") as (rt, admin):
        sid = await admin.service()
        base = f"/api/email/services/{sid}/domains"
        r = await admin("POST", base, json={"domain": "acme.test", "tracking_host": "Track.Acme.TEST"})
        assert r.status_code == 201, r.text
        d = r.json()
        assert d["tracking_host"] == "track.acme.test"
        assert d["records"][-1] == {"record": "TRACKING", "type": "CNAME", "name": "track.acme.test",
                                    "value": "mail.postline.example", "required": False}
        for bad in ("track.other.test", "acme.test", "not a host", "x.acme.test.evil.test"):
            r = await admin("PATCH", f"{base}/{d['id']}", json={"tracking_host": bad})
            assert r.status_code == 400 and r.json()["error"].startswith("tracking_host:"), r.text
        r = await admin("POST", base, json={"domain": "b.test", "tracking_host": "elsewhere.test"})
        assert r.status_code == 400 and "tracking_host" in r.json()["error"]
        r = await admin("PATCH", f"{base}/{d['id']}", json={"tracking_host": "links.acme.test"})
        assert r.json()["tracking_host"] == "links.acme.test"
        saved = rt.control.state.domains[d["id"]]
        assert base_url(rt.settings, saved) == "https://links.acme.test"
        r = await admin("PATCH", f"{base}/{d['id']}", json={"tracking_host": None})
        assert "tracking_host" not in r.json() and all(x["type"] != "CNAME" for x in r.json()["records"])
        assert base_url(rt.settings, rt.control.state.domains[d["id"]]) == "https://mail.postline.example"


def test_old_domain_events_without_tracking_host_still_decode():
    raw = (b'{"type":"domain.saved","workspace_id":"w","service_id":"s","domain_id":"d","domain":"a.test",'
           b'"rsa_selector":"r","rsa_private_sealed":"x","rsa_public_b64":"x","ed_selector":"e",'
           b'"ed_private_sealed":"x","ed_public_b64":"x","created_at":"2026-01-01T00:00:00Z"}')
    assert ev.decode(raw).tracking_host is None
    svc = ev.decode(b'{"type":"service.saved","workspace_id":"w","service_id":"s","name":"n",'
                    b'"created_at":"2026-01-01T00:00:00Z"}')
    assert svc.list_unsubscribe is False
    assert base_url(SimpleNamespace(base_url="http://h:1"), None) == "http://h:1"
