"""A ``migrate`` that dies or is stopped part of the way through: kill -9, SIGTERM, Ctrl-C, a
terminated backend. What committed stays recorded, nothing else is left, and the next
``migrate`` resumes where it stopped."""

import io
import json
import signal

import pytest
from django.core.management import call_command
from django.db import DataError

from tests.crashes import (
    BACKEND_GONE_TIMEOUT,
    ManageProcess,
    hold_snapshot,
    holds_lock,
    index_state,
    progress_rows,
    waits_for_old_snapshot,
)
from tests.helpers import (
    Session,
    applied,
    columns,
    is_alive,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
)
from tests.scenarios import RUNPYTHON_SEEN as SEEN

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

SIGNALS = pytest.mark.parametrize(
    ("signum", "returncode", "name"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT (Ctrl-C)")],
    ids=["sigterm", "sigint"],
)


#: Settings of a child that waits for tests_beta out of the lock queue (pgmigrate.aside).
ASIDE = json.dumps({"PGMIGRATE_PROTECTED": {"application_name": ["beta-holder"]}})
#: Settings of a child that waits for it in the queue.
IN_QUEUE = json.dumps({"PGMIGRATE_STEP_ASIDE": False})


def blocked_child(sessions, *, aside=False):
    """0001 applied, tests_beta held by another session; a child ``migrate tests 0002`` that
    committed operation 1 and waits on tests_beta in operation 2: in the lock queue, or
    (``aside``) out of it. Returns (blocker, child, backend pid)."""
    migrate("tests", "0001", verbosity=0)
    blocker = Session(application_name="beta-holder").hold("tests_beta")
    sessions.append(blocker)
    env = {"PGMIGRATE_TEST_SETTINGS": ASIDE} if aside else {"PGMIGRATE_TEST_SETTINGS": IN_QUEUE}
    child = ManageProcess("migrate", "tests", "0002", PGMIGRATE_TEST_ACTION="", **env)
    try:
        backend_pid = child.backend_pid
        if aside:
            wait_until(
                lambda: "stepped out of the lock queue" in child.stdout,
                what="migrate waits for tests_beta out of the lock queue",
            )
        else:
            wait_until(lambda: is_waiting_on_lock(backend_pid), what="migrate waits on tests_beta")
    except BaseException:
        child.close()
        raise
    return blocker, child, backend_pid


def assert_resumes_at_operation_2_and_completes():
    assert progress_rows() == [("tests", "0002_add_fields", 1, 2, "forwards", 0, None)]
    assert "flag" in columns("tests_alpha")
    assert "flag" not in columns("tests_beta")
    out = migrate("tests")
    assert (
        "resuming tests.0002_add_fields at operation 2 of 2 (operations 1 to 1 were applied by "
        "an earlier run)" in out
    )
    assert applied() == ["0001_initial", "0002_add_fields", "0003_alpha_note"]
    assert {"flag", "note"} <= columns("tests_alpha")
    assert "flag" in columns("tests_beta")
    assert progress_rows() == []


@pytest.mark.parametrize("aside", [False, True], ids=["in-queue", "out-of-queue"])
def test_kill_9_while_waiting_on_a_lock(scenario, sessions, aside):
    blocker, child, backend_pid = blocked_child(sessions, aside=aside)
    with child:
        # The dead client's statement does not wait for the lock (and run and commit once the
        # blocker is gone): the server notices the client is gone (client_connection_check_
        # interval) and ends the backend while the blocker still holds its lock.
        child.kill_and_wait_for_backend(backend_pid)
    assert holds_lock(blocker.pid, "tests_beta")
    blocker.release()
    assert_resumes_at_operation_2_and_completes()


@SIGNALS
@pytest.mark.parametrize("aside", [False, True], ids=["in-queue", "out-of-queue"])
def test_signal_while_an_operation_waits_rolls_it_back(
    scenario, sessions, signum, returncode, name, aside
):
    blocker, child, backend_pid = blocked_child(sessions, aside=aside)
    with child:
        child.send_signal(signum)
        assert child.wait() == returncode, child.stderr
    stderr = child.stderr
    assert "Traceback" not in stderr
    assert f"pgmigrate: migration tests.0002_add_fields interrupted by {name}." in stderr
    assert "applied     1. Add field flag to Alpha" in stderr
    assert "FAILED      2. Add field flag to Beta (rolled back)" in stderr
    assert "operation 1 is applied, and it resumes at operation 2" in stderr
    # The cancelled statement ended with the process, and the blocker was left alone.
    wait_until(lambda: not is_alive(backend_pid), what="the migrating backend ended")
    assert holds_lock(blocker.pid, "tests_beta")
    blocker.release()
    assert_resumes_at_operation_2_and_completes()


def test_terminated_backend_is_a_lost_connection(scenario, sessions):
    blocker, child, backend_pid = blocked_child(sessions)
    with child:
        admin = Session(application_name="admin")
        sessions.append(admin)
        assert admin.execute("SELECT pg_terminate_backend(%s)", [backend_pid]) == [(True,)]
        assert child.wait() == 1, child.stderr
    stderr = child.stderr
    assert "Traceback" not in stderr
    assert (
        "pgmigrate: migration tests.0002_add_fields stopped: the migrating connection "
        f"(backend pid {backend_pid}) was lost" in stderr
    )
    assert "operation 1 is applied, and it resumes at operation 2" in stderr
    blocker.release()
    assert_resumes_at_operation_2_and_completes()


@pytest.mark.scenario("interrupt")
def test_interrupt_at_commit_lets_the_operation_commit(scenario):
    """Ctrl-C the moment operation 1's transaction committed: it stays applied and recorded,
    operation 2 does not run, and ``call_command`` raises the KeyboardInterrupt itself."""
    migrate("tests", "0001")
    SEEN.clear()
    SEEN["interrupt_at_commit"] = True
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        call_command("migrate", "tests", "0002", stdout=out, stderr=out, no_color=True)
    SEEN.clear()
    report = out.getvalue()
    assert "pgmigrate: migration tests.0002_commit interrupted by SIGINT (Ctrl-C)." in report
    assert "it stopped after operation 1 of 2" in report
    assert "operation 1 is applied, and it resumes at operation 2" in report
    assert progress_rows() == [("tests", "0002_commit", 1, 2, "forwards", 0, None)]
    assert "flag" in columns("tests_alpha")
    assert "flag" not in columns("tests_beta")
    assert applied() == ["0001_initial"]

    out = migrate("tests", "0002")
    assert "resuming tests.0002_commit at operation 2 of 2" in out
    assert "flag" in columns("tests_beta")
    assert applied() == ["0001_initial", "0002_commit"]
    assert progress_rows() == []


@pytest.mark.scenario("interrupt")
def test_interrupt_stops_an_operation_at_once(scenario):
    """Ctrl-C while a RunPython computes without queries interrupts it at once, as it would
    interrupt plain Django, and its transaction (with its ALTER) is rolled back."""
    SEEN.clear()
    migrate("tests", "0002")
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        call_command("migrate", "tests", stdout=out, stderr=out, no_color=True)
    assert "busy_loop_finished" not in SEEN
    assert "FAILED      1. Raw Python operation (rolled back)" in out.getvalue()
    assert "flag" not in columns("tests_gamma")
    assert progress_rows() == []
    assert applied() == ["0001_initial", "0002_commit"]


CIC_ENV = {"PGMIGRATE_TEST_SCENARIO": "concurrent", "PGMIGRATE_TEST_ACTION": ""}


def assert_next_migrate_rebuilds_alpha_name_idx():
    """The state a stopped ``CREATE INDEX CONCURRENTLY alpha_name_idx`` leaves, and the
    migrate after it."""
    assert index_state("alpha_name_idx")[1] is False
    ((done, statements, inflight),) = query(
        "SELECT done, statements, inflight FROM pgmigrate_progress WHERE name = '0003_index'"
    )
    assert (done, statements) == (0, 0) and inflight
    out = migrate("tests")
    assert "resuming tests.0003_index at statement 1 of operation 1 of 2" in out
    assert "already exists" not in out
    assert applied()[-2:] == ["0003_index", "0004_drop"]
    assert index_state("alpha_name_idx")[1] is True
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
def test_kill_9_during_create_index_concurrently(scenario, sessions):
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)
    with ManageProcess("migrate", "tests", "0003", **CIC_ENV) as child:
        backend_pid = child.backend_pid
        # The index is in the catalog and its build waits for the old snapshot to end.
        wait_until(
            lambda: waits_for_old_snapshot(backend_pid, "alpha_name_idx"),
            what="CREATE INDEX CONCURRENTLY waits for the old snapshot",
        )
        child.kill_and_wait_for_backend(backend_pid)
    assert is_alive(holder.pid)  # the build never got past its wait
    holder.release()
    assert_next_migrate_rebuilds_alpha_name_idx()


@pytest.mark.scenario("concurrent")
@SIGNALS
def test_signal_during_create_index_concurrently(scenario, sessions, signum, returncode, name):
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)
    with ManageProcess("migrate", "tests", "0003", **CIC_ENV) as child:
        backend_pid = child.backend_pid
        wait_until(
            lambda: waits_for_old_snapshot(backend_pid, "alpha_name_idx"),
            what="CREATE INDEX CONCURRENTLY waits for the old snapshot",
        )
        child.send_signal(signum)
        assert child.wait() == returncode, child.stderr
    stderr = child.stderr
    assert "Traceback" not in stderr
    assert f"pgmigrate: migration tests.0003_index interrupted by {name}." in stderr
    assert is_alive(holder.pid)
    holder.release()
    assert_next_migrate_rebuilds_alpha_name_idx()
    # The report names what the cancelled build left, as for any other failure of it.
    assert (
        "FAILED      1. Concurrently create index alpha_name_idx on field(s) name of model "
        "Alpha (nothing of it committed; an INVALID index alpha_name_idx was left; the next "
        "migrate drops and rebuilds it)" in stderr
    )


@pytest.mark.scenario("runsql_statements")
@pytest.mark.parametrize(
    ("signum", "returncode", "name"),
    [
        (signal.SIGTERM, 143, "SIGTERM"),
        (signal.SIGINT, 130, "SIGINT (Ctrl-C)"),
        (signal.SIGKILL, -signal.SIGKILL, None),
    ],
    ids=["sigterm", "sigint", "sigkill"],
)
def test_stopped_between_statements_of_a_runsql_list(scenario, sessions, signum, returncode, name):
    """Statement 1 of the RunSQL list (UPDATE) committed; statement 2 (ADD CONSTRAINT) waits
    on a reader of tests_alpha when the process is stopped: the next migrate resumes at
    statement 2 and never runs the UPDATE again."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('b')")
    reader = Session(application_name="alpha-reader").hold("tests_alpha")
    sessions.append(reader)
    with ManageProcess(
        "migrate",
        "tests",
        PGMIGRATE_TEST_SCENARIO="runsql_statements",
        PGMIGRATE_TEST_ACTION="",
        PGMIGRATE_TEST_SETTINGS=IN_QUEUE,
    ) as child:
        backend_pid = child.backend_pid
        wait_until(lambda: is_waiting_on_lock(backend_pid), what="statement 2 waits on alpha")
        # (Read through the reader: a new reader would queue behind the waiting ALTER.)
        assert reader.execute("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("b+",)]
        child.send_signal(signum)
        assert child.wait() == returncode, child.stderr
    wait_until(
        lambda: not is_alive(backend_pid),
        what="the migrating backend ended",
        timeout=BACKEND_GONE_TIMEOUT,
    )
    assert holds_lock(reader.pid, "tests_alpha")
    reader.release()
    if name is not None:
        stderr = child.stderr
        assert "Traceback" not in stderr
        assert f"pgmigrate: migration tests.0002_double interrupted by {name}." in stderr
        assert (
            "FAILED      2. Raw SQL operation (its statement 1 committed and is recorded; the "
            "next migrate resumes at statement 2)" in stderr
        )
    assert progress_rows() == [("tests", "0002_double", 1, 2, "forwards", 1, None)]
    assert query("SELECT count(*) FROM pg_constraint WHERE conname = 'not_bad'") == [(0,)]

    out = migrate("tests")
    assert "resuming tests.0002_double at statement 2 of operation 2 of 2" in out
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("b+",)]
    assert query("SELECT name FROM tests_gamma") == [("inserted once",)]
    assert applied() == ["0001_initial", "0002_double"]
    assert progress_rows() == []


@pytest.mark.scenario("check_interval")
def test_client_connection_check_interval_is_set_while_migrating_only(scenario):
    """Migrations run with client_connection_check_interval = 500 ms (what lets the server
    end a dead client's statement above); the connection gets its own value back after the
    run, whether it failed or not."""
    assert query("SHOW client_connection_check_interval") == [("0",)]
    with pytest.raises(DataError) as raised:
        migrate("tests")
    assert "division by zero" in str(raised.value)
    assert query("SELECT name FROM tests_gamma") == [("500ms",)]
    assert query("SHOW client_connection_check_interval") == [("0",)]
    migrate("tests", "0001", verbosity=0)  # unapplies 0002: a run that succeeds
    assert applied() == ["0001_initial"]
    assert query("SHOW client_connection_check_interval") == [("0",)]
