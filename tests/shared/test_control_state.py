"""The control projection keeps the newest state of each entity, whatever order copies arrive in."""
from __future__ import annotations

from datetime import timedelta

from shared import events as ev
from shared.control.state import ControlState


def recipient(verified: bool, at, event_id: str | None = None) -> ev.SandboxRecipientSaved:
    return ev.SandboxRecipientSaved(id=event_id or ev.new_id(), workspace_id="w", service_id="s", recipient_id="r1",
                                    email="ann@example.com", verified=verified, created_at=at, time=at)


def test_an_older_copy_appended_again_later_does_not_undo_a_newer_state():
    """A producer retry without idempotence can append the creation again after the
    verification: the projection must keep the verification."""
    state, t0 = ControlState(), ev.utcnow()
    created, verified = recipient(False, t0), recipient(True, t0 + timedelta(seconds=1))
    assert state.apply(created, offset=10)
    assert state.apply(verified, offset=11)
    assert not state.apply(created, offset=12)  # the duplicate, at a later position
    assert state.is_verified_sandbox_recipient("s", "ann@example.com")


def test_log_order_wins_over_clocks():
    """A change stamped earlier (another host's clock) but later on the log is applied."""
    state, t0 = ControlState(), ev.utcnow()
    assert state.apply(recipient(False, t0), offset=1)
    assert state.apply(recipient(True, t0 - timedelta(seconds=5)), offset=2)
    assert state.is_verified_sandbox_recipient("s", "ann@example.com")


def test_the_local_apply_then_the_same_record_from_the_log():
    state, t0 = ControlState(), ev.utcnow()
    verified = recipient(True, t0)
    assert state.apply(verified, offset=7)  # read-your-writes after the append
    assert not state.apply(verified, offset=7)  # the follower reads the same record
    assert state.is_verified_sandbox_recipient("s", "ann@example.com")


def test_positions_still_order_copies_of_the_same_time():
    state, t0 = ControlState(), ev.utcnow()
    assert state.apply(recipient(False, t0), offset=5)
    assert not state.apply(recipient(True, t0), offset=4)  # an earlier position: stale
    assert state.apply(recipient(True, t0), offset=6)
    assert state.is_verified_sandbox_recipient("s", "ann@example.com")
