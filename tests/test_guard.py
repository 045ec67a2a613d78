"""The interrupt guard: signals held back while pgmigrate writes what must stay whole."""

import signal

import pytest

from pgmigrate.interrupts import Guard, Terminated


def test_signal_outside_a_deferred_section_raises_at_once():
    guard = Guard()
    with pytest.raises(KeyboardInterrupt):
        guard.handler(signal.SIGINT, None)


def test_signal_inside_a_deferred_section_is_raised_when_it_ends():
    guard = Guard()
    with pytest.raises(Terminated), guard.deferred(cancellable=False):
        assert not guard.cancellable
        with guard.deferred(cancellable=True):
            guard.handler(signal.SIGTERM, None)  # noted, not raised
            assert guard.cancellable
        assert guard.pending == signal.SIGTERM  # still inside the outer section
    assert guard.pending is None and guard.cancellable


def test_exit_without_enter_and_reset():
    guard = Guard()
    guard.exit()  # nothing to leave: no error
    guard.enter(cancellable=False)
    guard.handler(signal.SIGINT, None)
    guard.reset()  # the run is ending: leave without raising
    assert guard.cancellable


def test_privilege_check_skips_other_databases():
    from pgmigrate.checks import check_signal_privilege

    assert check_signal_privilege(databases=["sqlite"]) == []
    assert check_signal_privilege() == []
