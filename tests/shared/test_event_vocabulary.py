"""The event vocabulary (shared/events.py): the type sets cover the event classes, the
lifecycle fields and the recipient index read the same from a request and its summary."""
from __future__ import annotations

import typing

from shared import events as ev


def lifecycle_classes() -> dict[str, type]:
    union = typing.get_args(typing.get_args(ev.LifecycleEvent)[0])
    return {cls.model_fields["type"].default: cls for cls in union}


def test_the_type_sets_name_exactly_the_lifecycle_events():
    assert set(ev.LIFECYCLE_TYPES) == set(lifecycle_classes())
    assert set(ev.RELEASED_TYPES) | set(ev.HELD_TYPES) == set(ev.LIFECYCLE_TYPES)
    assert not set(ev.RELEASED_TYPES) & set(ev.HELD_TYPES)
    for subset in (ev.FINAL_TYPES, ev.TRACKING_TYPES, ev.DELIVERY_TYPES):
        assert set(subset) <= set(ev.RELEASED_TYPES)
    assert ev.MESSAGE_STATUSES == ("queued", *ev.DELIVERY_TYPES)


def test_one_spelling():
    assert "canceled" in ev.LIFECYCLE_TYPES and not any("cancelled" in t for t in ev.LIFECYCLE_TYPES)


REQ = ev.SendRequested(workspace_id="w", service_id="s", email_id="m", mode="production", to=["Ann <ann@x.test>"],
                       cc=["bob@x.test"], bcc=["Cy@X.test"], subject="Hi", tags=["t"], recipients=["ann@x.test"],
                       **{"from": "a@x.test"})


def test_lifecycle_fields_from_a_request_and_from_its_summary_agree():
    fields = ev.lifecycle_fields(REQ)
    assert tuple(fields) == ev.LIFECYCLE_FIELDS
    assert ev.lifecycle_fields(ev.message_summary(REQ)) == fields
    assert ev.Sent(recipient="ann@x.test", **fields).subject == "Hi"


def test_the_recipient_index_counts_to_cc_bcc_and_maps_back():
    assert ev.recipients_in_order(REQ) == ["ann@x.test", "bob@x.test", "Cy@X.test"]
    assert ev.recipient_index(REQ, "cy@x.test") == 2 and ev.recipient_index(REQ, "nobody@x.test") == 0
    summary = ev.message_summary(REQ)
    assert ev.recipient_at(summary, 2) == "Cy@X.test" and ev.recipient_at(summary, 3) is None


def test_the_summary_leaves_bodies_out():
    big = REQ.model_copy(update={"html": "<p>x</p>", "text": "x", "headers": {"X-A": "1"}})
    assert not set(ev.message_summary(big)) & ev.SUMMARY_EXCLUDES
