"""Event schemas: round trip, derived ids, and the upcaster path for old versions."""
from __future__ import annotations

import json
import uuid

import pytest
from pydantic import ValidationError

from shared import events as ev


def test_round_trip_and_alias():
    e = ev.Delivered(workspace_id="w", service_id="s", email_id="m", recipient="r@example.com",
                     smtp_code=250, **{"from": "a@example.com"})
    back = ev.decode(ev.encode(e))
    assert back == e and json.loads(ev.encode(e))["from"] == "a@example.com"


def test_derived_ids_are_stable_and_distinct():
    # the same ids as uuid5 (ids written before the fast path must still match)
    assert ev.derived_id("m", "r", "deferred", 3) == str(uuid.uuid5(ev._EVENT_NS, "m|r|deferred|3"))
    assert ev.derived_id("é", 0) == str(uuid.uuid5(ev._EVENT_NS, "é|0"))
    assert ev.derived_id("m", "r", "sent") == ev.derived_id("m", "r", "sent")
    assert ev.derived_id("m", "r", "sent") != ev.derived_id("m", "r", "delivered")


def test_upcaster_turns_an_old_version_into_the_current_one(monkeypatch):
    old = {"type": "dropped", "v": 0, "workspace_id": "w", "email_id": "m", "why": "sandbox"}

    def v0_to_v1(obj):  # maps fields only: the decode loop advances ``v``
        obj = dict(obj, reason=obj["why"])
        del obj["why"]
        return obj

    monkeypatch.setitem(ev.UPCASTERS, ("dropped", 0), v0_to_v1)
    e = ev.decode(json.dumps(old).encode())
    assert isinstance(e, ev.Dropped) and e.reason == "sandbox" and e.v == 1


def test_upcasters_chain_through_versions_without_bumping_v_themselves(monkeypatch):
    old = {"type": "dropped", "v": -1, "workspace_id": "w", "email_id": "m", "recipient": "a@b.c"}
    monkeypatch.setitem(ev.UPCASTERS, ("dropped", -1), lambda o: {**o, "why": "sandbox"})
    monkeypatch.setitem(ev.UPCASTERS, ("dropped", 0), lambda o: {**o, "reason": o["why"]})
    e = ev.decode(json.dumps(old).encode())
    assert e.reason == "sandbox" and e.v == 1


def test_garbage_is_refused():
    with pytest.raises(ValidationError):
        ev.decode(b'{"type": "no-such-type"}')
