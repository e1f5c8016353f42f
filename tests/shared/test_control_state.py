"""The control projection keeps the newest state of each entity, whatever order copies arrive in."""
from __future__ import annotations

from datetime import timedelta

from shared import events as ev
from shared.control.merge import Outcome, same_state
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


# ---------------------------------------------------------------- changes (no lost updates)

def service(**fields) -> ev.ServiceSaved:
    return ev.ServiceSaved(**{"workspace_id": "w", "service_id": "s", "name": "app", "created_at": ev.utcnow(),
                              **fields})


def change(base: ev.ServiceSaved, based_on: int, versions: dict | None = None, **fields) -> ev.ServiceSaved:
    """A change of ``fields`` as ControlPlane.change writes it, decided on the view ``base`` at ``based_on``."""
    return base.model_copy(update={**fields, "id": ev.new_id(), "changed": sorted(fields), "based_on": based_on,
                                   "versions": versions if versions is not None else {"*": based_on}})


def test_changes_of_different_fields_from_the_same_old_view_both_apply():
    """mode → production on one process, then rate on another that had not seen it: the rate
    change does not write back its stale mode (the lost update of issue 35)."""
    state, created = ControlState(), service()
    assert state.apply(created, 5) is Outcome.WHOLE
    assert state.apply(change(created, 5, mode="production"), 10) is Outcome.WHOLE
    stale_rate = change(created, 5, rate_per_minute=100)  # its record still says sandbox
    assert state.apply(stale_rate, 11) is Outcome.PARTIAL
    svc = state.services["s"]
    assert (svc.mode, svc.rate_per_minute) == ("production", 100)


def test_a_change_of_a_field_changed_since_its_view_is_refused():
    state, created = ControlState(), service()
    state.apply(created, 5)
    state.apply(change(created, 5, name="first"), 10)
    assert state.apply(change(created, 5, name="second"), 11) is Outcome.CONFLICT
    assert state.services["s"].name == "first"


def test_a_change_decided_on_the_latest_view_holds_the_whole_state():
    state, created = ControlState(), service()
    state.apply(created, 5)
    state.apply(change(created, 5, mode="production"), 10)
    latest = state.services["s"]
    assert state.apply(change(latest, state.position_of(latest), state.versions_of("service:s"), name="x"), 12) \
        is Outcome.WHOLE


def test_a_stale_change_never_resurrects_a_deleted_entity():
    state, created = ControlState(), service()
    state.apply(created, 5)
    assert state.apply(change(created, 5, deleted=True), 10) is Outcome.WHOLE
    assert state.apply(change(created, 5, track_opens=True), 11) is Outcome.GONE
    assert "s" not in state.services
    assert state.entity("service:s").deleted


def test_a_whole_state_record_after_the_view_refuses_changes_based_before_it():
    """An older writer (or a re-create) writes the whole state: a change decided before it
    cannot tell which fields it replaced, so it is refused rather than merged blindly."""
    state, created = ControlState(), service()
    state.apply(created, 5)
    state.apply(service(mode="production"), 8)
    assert state.apply(change(created, 5, name="x"), 9) is Outcome.CONFLICT


def test_a_copy_of_the_latest_change_is_not_a_newer_change_of_its_fields():
    """A producer retry appends the change again: a change decided on the first copy is not
    refused because of the second."""
    state, created = ControlState(), service()
    state.apply(created, 5)
    first = change(created, 5, name="x")
    state.apply(first, 10)
    assert state.apply(first, 11) is Outcome.IGNORED
    assert state.apply(change(state.services["s"], 10, {"*": 5, "name": 10}, name="y"), 12) is Outcome.WHOLE


def test_a_replay_that_starts_at_an_anchor_decides_like_a_replay_of_everything():
    """Compaction keeps the latest record per key: after a merge, the anchor (the whole state,
    with the versions) is that record, and a process replaying only it agrees with one that
    replayed the whole history, also on the conflicts of changes that come later."""
    full, created = ControlState(), service()
    full.apply(created, 5)
    full.apply(change(created, 5, mode="production"), 10)
    full.apply(change(created, 5, rate_per_minute=100), 11)  # merged: not the whole state
    held = full.services["s"]
    anchor = held.model_copy(update={"id": ev.new_id(), "changed": [], "based_on": full.position_of(held),
                                     "versions": full.versions_of("service:s")})
    assert full.apply(anchor, 12) is Outcome.WHOLE
    compacted = ControlState()
    assert compacted.apply(anchor, 12) is Outcome.WHOLE
    assert same_state(compacted.services["s"], full.services["s"])
    for late in (change(created, 5, mode="sandbox"), change(created, 5, track_opens=True)):
        assert compacted.apply(late, 13) is full.apply(late, 13)
    assert same_state(compacted.services["s"], full.services["s"])


def test_an_anchor_that_missed_a_later_change_does_not_hold_the_whole_state():
    state, created = ControlState(), service()
    state.apply(created, 5)
    anchor = created.model_copy(update={"id": ev.new_id(), "changed": [], "based_on": 5, "versions": {"*": 5}})
    state.apply(change(created, 5, name="x"), 6)
    assert state.apply(anchor, 7) is Outcome.PARTIAL  # its writer appends another
    assert state.services["s"].name == "x"


def test_records_written_before_changes_existed_read_as_whole_states():
    old = (b'{"id":"e1","v":1,"time":"2024-01-01T00:00:00Z","workspace_id":"w","service_id":"s",'
           b'"type":"service.saved","name":"app","created_at":"2024-01-01T00:00:00Z"}')
    event = ev.decode(old)
    assert (event.changed, event.based_on, event.versions) == (None, None, {})
    state = ControlState()
    assert state.apply(event, 3) is Outcome.WHOLE
    assert state.apply(service(name="again"), 4) is Outcome.WHOLE  # an older writer's whole state still wins
