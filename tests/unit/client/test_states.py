"""The state machine of ``docs/sync-states.md``, as a pure value."""

from __future__ import annotations

from stockzen_client.domain.status import StateMachine, SyncState


def test_a_device_starts_syncing_and_no_answer_makes_it_offline() -> None:
    machine = StateMachine()
    assert machine.shown(queued=0) is SyncState.SYNCING
    assert machine.unreachable() is SyncState.OFFLINE
    assert machine.failures == 0  # no answer is not a failure of the server


def test_failures_with_an_answer_are_an_error_from_the_third_in_a_row() -> None:
    machine = StateMachine()
    assert [machine.failed() for _ in range(4)] == [
        SyncState.SYNCING,
        SyncState.SYNCING,
        SyncState.ERROR,
        SyncState.ERROR,
    ]
    assert machine.succeeded(queued=0, attempts=0) is SyncState.UP_TO_DATE
    assert machine.failed() is SyncState.SYNCING  # counted again from the success


def test_a_refused_token_is_an_error_at_once_and_so_is_a_stuck_change() -> None:
    assert StateMachine().failed(at_once=True) is SyncState.ERROR
    assert StateMachine().failed(attempts=3) is SyncState.ERROR
    assert StateMachine().succeeded(queued=1, attempts=3) is SyncState.ERROR
    assert StateMachine().succeeded(queued=1, attempts=2) is SyncState.SYNCING


def test_up_to_date_means_nothing_queued_and_a_pull_that_caught_up() -> None:
    machine = StateMachine()
    assert machine.succeeded(queued=0, attempts=0, caught_up=False) is SyncState.SYNCING
    assert machine.succeeded(queued=0, attempts=0) is SyncState.UP_TO_DATE
    assert machine.shown(queued=1) is SyncState.SYNCING  # a change queued since: a sync is due
    assert machine.shown(queued=0, warning=True) is SyncState.ERROR
