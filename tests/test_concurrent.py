"""Migrations with ``atomic = False``: ``RunSQL`` statement by statement, and ``CONCURRENTLY``
index statements that are run again safely after a lock timeout or a crash."""

import contextlib
from collections.abc import Iterator

import pytest
from django.core.management.base import CommandError
from django.db import IntegrityError, OperationalError
from django.test import override_settings

from tests.crashes import (
    ManageProcess,
    hold_snapshot,
    holds_lock,
    index_state,
    progress_rows,
    waits_for_old_snapshot,
    waits_on,
)
from tests.helpers import (
    MigrateThread,
    Session,
    applied,
    columns,
    is_waiting_on_lock,
    migrate,
    query,
    wait_until,
    waited_at_least,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


# RunSQL statement by statement ------------------------------------------------------------


@pytest.mark.scenario("runsql_statements")
def test_runsql_list_resumes_after_its_last_committed_statement(scenario):
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('a'), ('bad')")

    with pytest.raises(IntegrityError) as raised:
        migrate("tests")
    report = str(raised.value)
    assert isinstance(raised.value, CommandError)
    assert "Migration tests.0002_double is not recorded as applied: operation 2 of 2 failed" in (
        report
    )
    assert "applied     1. Add field flag to Beta" in report
    assert (
        "FAILED      2. Raw SQL operation (its statement 1 committed and is recorded; the next "
        "migrate resumes at statement 2)" in report
    )
    assert 'check constraint "not_bad" of relation "tests_alpha" is violated' in report
    assert "it resumes at statement 2 of operation 2" in report
    assert progress_rows() == [("tests", "0002_double", 1, 2, "forwards", 1, None)]
    # The UPDATE (statement 1) committed once; the constraint (2) and the INSERT (3) did not.
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("bad+",)]
    assert query("SELECT count(*) FROM tests_gamma") == [(0,)]
    assert applied() == ["0001_initial"]

    query("UPDATE tests_alpha SET name = 'fixed+' WHERE name = 'bad+'")
    out = migrate("tests")
    assert "resuming tests.0002_double at statement 2 of operation 2 of 2" in out
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a+",), ("fixed+",)]
    assert query("SELECT name FROM tests_gamma") == [("inserted once",)]
    assert query("SELECT count(*) FROM pg_constraint WHERE conname = 'not_bad'") == [(1,)]
    assert applied() == ["0001_initial", "0002_double"]
    assert progress_rows() == []

    migrate("tests", "0001")
    assert query("SELECT name FROM tests_alpha ORDER BY id") == [("a",), ("fixed",)]
    assert query("SELECT count(*) FROM tests_gamma") == [(0,)]
    assert query("SELECT count(*) FROM pg_constraint WHERE conname = 'not_bad'") == [(0,)]
    assert "flag" not in columns("tests_beta")
    assert applied() == ["0001_initial"]
    assert progress_rows() == []


# Lock timeouts of CREATE INDEX CONCURRENTLY ---------------------------------------------

SNAPSHOT_WAIT = {
    "PGMIGRATE_BLOCKING_ACTION": None,
    "PGMIGRATE_LOCK_TIMEOUT": 0.2,
    "PGMIGRATE_LOCK_RETRY_DELAY": 0.02,
    "PGMIGRATE_LOCK_RETRY_MAX_DELAY": 0.1,
}
CIC_ALPHA = "statement 1 of operation 1 of tests.0003_index"


@pytest.mark.scenario("concurrent")
@override_settings(**SNAPSHOT_WAIT, PGMIGRATE_LOCK_RETRIES=50)
def test_retry_drops_the_invalid_index_of_the_attempt_before(scenario, sessions):
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)
    run = MigrateThread("tests", "0003")
    first = wait_until(lambda: index_state("alpha_name_idx"), what="the first build began")
    # Each attempt waits for the old snapshot until the lock timeout, leaving an INVALID
    # index; the next attempt drops it and builds a new one (not "already exists").
    wait_until(
        lambda: (
            f"{CIC_ALPHA} hit the lock timeout (attempt 2 of 51)" in run.output.getvalue()
            or not run.is_alive()
        ),
        what="the second attempt hit the lock timeout too",
    )
    assert run.is_alive(), run.output.getvalue() + repr(run.error)
    wait_until(
        lambda: (index_state("alpha_name_idx") or first)[0] != first[0],
        what="a later attempt built a new index",
    )
    assert "already exists" not in run.output.getvalue()
    holder.release()
    out = run.finish()

    assert f"{CIC_ALPHA} hit the lock timeout (attempt 1 of 51); retrying" in out
    assert "already exists" not in out
    assert index_state("alpha_name_idx")[1] is True
    assert index_state("beta_slow_idx")[1] is True
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
@override_settings(**SNAPSHOT_WAIT, PGMIGRATE_LOCK_RETRIES=0)
def test_next_migrate_rebuilds_the_invalid_index_a_lock_timeout_left(scenario, sessions):
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)

    with pytest.raises(CommandError) as raised:
        migrate("tests", "0003")
    report = str(raised.value)
    assert isinstance(raised.value, OperationalError)
    assert "stopped: a statement waited for a lock longer than the lock timeout" in report
    assert (
        "FAILED      1. Concurrently create index alpha_name_idx on field(s) name of model "
        "Alpha (nothing of it committed; an INVALID index alpha_name_idx was left; the next "
        "migrate drops and rebuilds it)" in report
    )
    assert "not applied 2." in report
    first = index_state("alpha_name_idx")
    assert first is not None and first[1] is False
    ((name, done, statements, inflight),) = query(
        "SELECT name, done, statements, inflight FROM pgmigrate_progress"
    )
    assert (name, done, statements) == ("0003_index", 0, 0)
    assert inflight
    assert applied()[-1] == "0002_function"

    holder.release()
    out = migrate("tests", "0003")
    assert "resuming tests.0003_index at statement 1 of operation 1 of 2" in out
    assert "already exists" not in out
    oid, valid = index_state("alpha_name_idx")
    assert valid is True and oid != first[0]  # dropped and built again
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
@override_settings(**SNAPSHOT_WAIT, PGMIGRATE_LOCK_RETRIES=2)
def test_the_clean_up_of_an_attempt_is_part_of_it(scenario, sessions):
    """A writer idle in transaction on the table: each build waits for it until the lock
    timeout, and so does the ``DROP INDEX CONCURRENTLY`` of the next attempt, which cleans up
    the INVALID index. That drop's lock timeout ends its attempt: 3 attempts in all, not a
    retry loop of the drop's own inside each (1 + 2 x 3 lock timeouts)."""
    migrate("tests", "0002")
    writer = Session(application_name="writer")
    sessions.append(writer)
    writer.connection.set_autocommit(False)
    writer.execute("INSERT INTO tests_alpha (name) VALUES ('w')")

    run = MigrateThread("tests", "0003")
    with pytest.raises(CommandError) as raised:
        run.finish()
    out = run.output.getvalue()

    assert "lock timeout (PGMIGRATE_LOCK_TIMEOUT = 0.2 s, 3 attempts)" in str(raised.value)
    assert f"{CIC_ALPHA} hit the lock timeout (attempt 2 of 3); retrying" in out
    assert f"{CIC_ALPHA} hit the lock timeout 3 times; giving up" in out
    assert "a statement hit the lock timeout" not in out
    index = index_state("alpha_name_idx")
    assert index is not None and index[1] is False
    writer.release()
    migrate("tests", "0003")
    assert index_state("alpha_name_idx")[1] is True
    assert progress_rows() == []


@pytest.mark.scenario("reindex")
@override_settings(**SNAPSHOT_WAIT, PGMIGRATE_LOCK_RETRIES=50)
def test_retry_of_reindex_concurrently_drops_what_the_attempt_before_left(scenario, sessions):
    """REINDEX CONCURRENTLY cut short by the lock timeout leaves an INVALID
    ``alpha_name_idx_ccnew``; each retry drops it first, so none is left in the end."""
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)
    run = MigrateThread("tests", "0003")
    wait_until(
        lambda: (
            "statement 1 of operation 1 of tests.0003_reindex hit the lock timeout (attempt 3"
            in run.output.getvalue()
            or not run.is_alive()
        ),
        what="the third attempt hit the lock timeout",
    )
    assert run.is_alive(), run.output.getvalue() + repr(run.error)
    holder.release()
    run.finish()
    assert query(
        "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE i.indrelid = 'tests_alpha'::regclass ORDER BY 1"
    ) == [("alpha_name_idx", True), ("tests_alpha_pkey", True)]
    assert applied()[-1] == "0003_reindex"
    assert progress_rows() == []


# Statement timeout --------------------------------------------------------------------

SLOW_ROWS = 60  # 5 ms each: building beta_slow_idx takes > 0.3 s


def add_slow_rows():
    query(
        "INSERT INTO tests_beta (name) SELECT 'row ' || n FROM generate_series(1, %s) n",
        [SLOW_ROWS],
    )


@pytest.mark.scenario("concurrent")
@pytest.mark.parametrize(
    "exempt",
    [
        None,
        # RunSQL and RemoveIndexConcurrently build it with CREATE INDEX CONCURRENTLY, which
        # is exempt whatever the setting says.
        [],
    ],
    ids=["default-exemptions", "no-exempt-classes"],
)
def test_statement_timeout_spares_concurrent_builds(scenario, exempt):
    migrate("tests", "0002")
    add_slow_rows()
    timeouts = {"PGMIGRATE_STATEMENT_TIMEOUT": 0.1}
    if exempt is not None:
        timeouts["PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT"] = exempt
    with override_settings(**timeouts):
        # Operation 2: RunSQL("CREATE INDEX CONCURRENTLY beta_slow_idx ...") wrapped in
        # SeparateDatabaseAndState.
        migrate("tests", "0003")
        assert index_state("beta_slow_idx")[1] is True
        migrate("tests", "0004")  # RemoveIndexConcurrently
        assert index_state("beta_slow_idx") is None
        migrate("tests", "0003")  # backwards: RemoveIndexConcurrently builds it again
    assert index_state("beta_slow_idx")[1] is True
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("slow_index")
@override_settings(PGMIGRATE_STATEMENT_TIMEOUT=0.1)
def test_statement_timeout_cuts_the_same_build_without_concurrently(scenario):
    """The control: the same index on the same rows, with the same timeout, in the same
    statement-by-statement mode, but built without CONCURRENTLY, is cut short."""
    migrate("tests", "0002")
    add_slow_rows()
    with pytest.raises(CommandError) as raised:
        migrate("tests", "0003")
    assert "canceling statement due to statement timeout" in str(raised.value)
    assert index_state("beta_slow_idx") is None
    assert applied()[-1] == "0002_function"


@pytest.mark.scenario("concurrent")
def test_dropping_a_leftover_index_is_spared_the_statement_timeout(scenario, sessions):
    """Before it runs CREATE INDEX CONCURRENTLY again, pgmigrate drops the INVALID index an
    earlier attempt left with DROP INDEX CONCURRENTLY, which waits for every transaction
    using the table. That statement is a concurrent index statement too: the statement
    timeout must not cut it, even when the operation's class is not in
    PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT (the build itself is exempt by parsing)."""
    migrate("tests", "0002")
    holder = hold_snapshot(sessions)
    with override_settings(**SNAPSHOT_WAIT), pytest.raises(CommandError):
        migrate("tests", "0003")
    holder.release()
    assert index_state("alpha_name_idx")[1] is False
    reader = Session(application_name="alpha-reader").hold("tests_alpha")
    sessions.append(reader)

    with override_settings(
        PGMIGRATE_BLOCKING_ACTION=None,
        PGMIGRATE_STEP_ASIDE=False,
        PGMIGRATE_STATEMENT_TIMEOUT=0.1,
        PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT=[],
    ):
        run = MigrateThread("tests", "0003")
        backend_pid = run.backend_pid
        wait_until(
            lambda: waited_at_least(backend_pid, 0.3) or not run.is_alive(),
            what="dropping the leftover index waited 0.3 s for the reader",
        )
        reader.release()
        out = run.finish()
    assert "resuming tests.0003_index at statement 1 of operation 1 of 2" in out
    assert index_state("alpha_name_idx")[1] is True
    assert applied()[-1] == "0003_index"


# Crashes during CONCURRENTLY statements ---------------------------------------------------


@contextlib.contextmanager
def _index_built_not_counted(
    sessions: list, *args: str, scenario: str = "concurrent"
) -> Iterator[tuple[ManageProcess, int, Session]]:
    """``manage.py migrate *args`` in a child whose CREATE INDEX CONCURRENTLY of
    alpha_name_idx has built the index and waits to count it (a session holds
    pgmigrate_progress). Yields the child, its backend pid and that session."""
    holder = hold_snapshot(sessions)
    with ManageProcess(
        "migrate", *args, PGMIGRATE_TEST_SCENARIO=scenario, PGMIGRATE_TEST_ACTION=""
    ) as child:
        backend_pid = child.backend_pid
        wait_until(
            lambda: waits_for_old_snapshot(backend_pid, "alpha_name_idx"),
            what="CREATE INDEX CONCURRENTLY waits for the old snapshot",
        )
        # The statement is marked in flight; hold the progress table so that counting it
        # done has to wait, then let the build finish.
        progress_holder = Session(application_name="progress-holder")
        sessions.append(progress_holder)
        progress_holder.hold("pgmigrate_progress", "SHARE")
        holder.release()
        wait_until(
            lambda: waits_on(backend_pid, "pgmigrate_progress"),
            what="migrate waits to count the built index",
        )
        yield child, backend_pid, progress_holder


@pytest.mark.scenario("concurrent")
def test_index_built_before_a_crash_counts_as_done(scenario, sessions):
    """kill -9 after CREATE INDEX CONCURRENTLY built the index but before its progress was
    counted: the index is valid, the progress row still says the statement is in flight. The
    next migrate counts the index as done (no "already exists", no rebuild)."""
    migrate("tests", "0002")
    with _index_built_not_counted(sessions, "tests", "0003") as (
        child,
        backend_pid,
        progress_holder,
    ):
        built = index_state("alpha_name_idx")
        assert built is not None and built[1] is True
        child.kill_and_wait_for_backend(backend_pid)
    assert holds_lock(progress_holder.pid, "pgmigrate_progress")
    progress_holder.release()
    ((done, statements, inflight),) = query(
        "SELECT done, statements, inflight FROM pgmigrate_progress WHERE name = '0003_index'"
    )
    assert (done, statements) == (0, 0) and inflight

    out = migrate("tests", "0003")
    assert "resuming tests.0003_index at statement 1 of operation 1 of 2" in out
    assert "already exists" not in out
    assert index_state("alpha_name_idx") == built  # the same index, not a rebuilt one
    assert index_state("beta_slow_idx")[1] is True
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
@pytest.mark.parametrize("drop_finished", [False, True], ids=["index-left", "index-gone"])
def test_drop_index_concurrently_interrupted_by_a_crash(scenario, sessions, drop_finished):
    """kill -9 while DROP INDEX CONCURRENTLY waits for a session using the table; whether the
    server finished the drop or not, the next migrate completes the migration."""
    migrate("tests", "0003")
    assert index_state("beta_slow_idx")[1] is True
    reader = Session(application_name="beta-reader").hold("tests_beta")
    sessions.append(reader)
    with ManageProcess(
        "migrate", "tests", "0004", PGMIGRATE_TEST_SCENARIO="concurrent", PGMIGRATE_TEST_ACTION=""
    ) as child:
        backend_pid = child.backend_pid
        wait_until(lambda: is_waiting_on_lock(backend_pid), what="the drop waits for the reader")
        child.kill_and_wait_for_backend(backend_pid)
    assert holds_lock(reader.pid, "tests_beta")
    reader.release()
    # The drop marked the index INVALID before it began to wait.
    assert index_state("beta_slow_idx")[1] is False
    if drop_finished:  # as when the server completed the drop after the client died
        query("DROP INDEX beta_slow_idx")
    ((done, statements, inflight),) = query(
        "SELECT done, statements, inflight FROM pgmigrate_progress WHERE name = '0004_drop'"
    )
    assert (done, statements) == (0, 0) and inflight

    out = migrate("tests")
    assert "resuming tests.0004_drop at statement 1 of operation 1 of 1" in out
    assert index_state("beta_slow_idx") is None
    assert applied()[-1] == "0004_drop"
    assert progress_rows() == []


@pytest.mark.scenario("basic")
def test_concurrent_statements_that_left_nothing(scenario):
    """A ``CREATE INDEX CONCURRENTLY`` whose attempt before never got to create its index is
    run again (not counted as done) and left nothing to tell of; a ``REINDEX CONCURRENTLY``
    that left no ``_ccnew`` index neither. Once built, the index counts as done."""
    from django.db import connections

    from pgmigrate import concurrent
    from pgmigrate.sql import parse

    migrate("tests", "0001", verbosity=0)
    connection = connections["default"]
    (build,) = parse("CREATE INDEX CONCURRENTLY alpha_later_idx ON tests_alpha (name)")
    assert concurrent.prepare(connection, build) is False
    assert concurrent.leftovers(connection, build) is None
    (reindex,) = parse("REINDEX TABLE CONCURRENTLY tests_alpha")
    assert concurrent.prepare(connection, reindex) is False
    assert concurrent.leftovers(connection, reindex) is None
    query("CREATE INDEX alpha_later_idx ON tests_alpha (name)")
    assert concurrent.prepare(connection, build) is True
    assert concurrent.leftovers(connection, build) == (
        "the index alpha_later_idx was built; the next migrate counts it as done"
    )


@pytest.mark.scenario("concurrent")
def test_report_says_the_index_was_built_when_its_count_failed(scenario, sessions):
    """The connection is lost after CREATE INDEX CONCURRENTLY built the index, while its
    count is written: the report says the index was built (not only what was recorded), and
    the next migrate counts it as done."""
    migrate("tests", "0002")
    with _index_built_not_counted(sessions, "tests", "0003") as (
        child,
        backend_pid,
        progress_holder,
    ):
        built = index_state("alpha_name_idx")
        assert built is not None and built[1] is True
        query("SELECT pg_terminate_backend(%s)", [backend_pid])
        assert child.wait() == 1
        report = child.stderr
    progress_holder.release()
    assert (
        "FAILED      1. Concurrently create index alpha_name_idx on field(s) name of model "
        "Alpha (statement 1 (outside a transaction) completed: the index alpha_name_idx was "
        "built, but recording that failed; the next migrate finds it and counts the "
        "statement as done)" in report
    ), report
    assert "nothing of it committed" not in report
    assert "none of its operations is applied, and it resumes at operation 1" in report

    out = migrate("tests", "0003")
    assert "resuming tests.0003_index at statement 1 of operation 1 of 2" in out
    assert index_state("alpha_name_idx") == built
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


# Migrating back from an operation cut short outside a transaction -------------------------

UNDO = "0002_index_then_update"


def _kill_while_waiting_on(table: str | None, *args: str, scenario: str) -> None:
    """Run ``migrate *args`` in a child and kill -9 it once its backend waits for a lock on
    ``table`` (a session the test holds), or for any lock (``table`` None)."""
    with ManageProcess(
        "migrate", *args, PGMIGRATE_TEST_SCENARIO=scenario, PGMIGRATE_TEST_ACTION=""
    ) as child:
        backend_pid = child.backend_pid
        wait_until(
            lambda: waits_on(backend_pid, table) if table else is_waiting_on_lock(backend_pid),
            what=f"migrate waits for a lock ({table or 'any'})",
        )
        child.kill_and_wait_for_backend(backend_pid)


@pytest.mark.scenario("concurrent_undo")
def test_migrating_back_from_a_build_that_never_began(scenario, sessions):
    """kill -9 while CREATE INDEX CONCURRENTLY, the first statement of a RunSQL list, waits
    for its table lock: it built nothing, and the list's UPDATE never ran. Migrating back
    runs nothing of the reverse (its UPDATE would strip a '+' that was never added, its DROP
    INDEX would fail) and builds nothing: none of the operation is applied."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('kept+')")
    blocker = Session(application_name="alpha-blocker").hold(
        "tests_alpha", "SHARE UPDATE EXCLUSIVE"
    )
    sessions.append(blocker)
    _kill_while_waiting_on("tests_alpha", "tests", scenario="concurrent_undo")
    blocker.release()
    assert index_state("alpha_name_idx") is None
    ((name, done, statements, inflight),) = query(
        "SELECT name, done, statements, inflight FROM pgmigrate_progress"
    )
    assert (name, done, statements) == (UNDO, 0, 0) and inflight

    out = migrate("tests", "0001")
    assert f"rolling back half-applied tests.{UNDO}" in out
    assert (
        f"operation 1 of tests.{UNDO} was cut short before its first statement changed "
        "anything: there is nothing of it to unapply" in out
    )
    assert query("SELECT name FROM tests_alpha") == [("kept+",)]
    assert index_state("alpha_name_idx") is None
    assert applied() == ["0001_initial"]
    assert progress_rows() == []

    migrate("tests")  # applied from its start, once
    assert query("SELECT name FROM tests_alpha") == [("kept++",)]
    assert index_state("alpha_name_idx")[1] is True
    assert progress_rows() == []


@pytest.mark.scenario("concurrent_undo")
def test_migrating_back_from_a_build_that_finished_before_a_crash(scenario, sessions):
    """kill -9 after CREATE INDEX CONCURRENTLY built its index, before it was counted.
    Migrating back first finishes the operation (the built index counts as done, the UPDATE
    runs), then unapplies all of it: its reverse undoes exactly what it did."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('kept+')")
    with _index_built_not_counted(sessions, "tests", scenario="concurrent_undo") as (
        child,
        backend_pid,
        progress_holder,
    ):
        child.kill_and_wait_for_backend(backend_pid)
    progress_holder.release()
    assert index_state("alpha_name_idx")[1] is True
    assert query("SELECT name FROM tests_alpha") == [("kept+",)]

    out = migrate("tests", "0001")
    assert f"rolling back half-applied tests.{UNDO}" in out
    assert query("SELECT name FROM tests_alpha") == [("kept+",)]
    assert index_state("alpha_name_idx") is None
    assert applied() == ["0001_initial"]
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
def test_migrating_back_from_a_drop_that_never_began(scenario, sessions):
    """kill -9 while RemoveIndexConcurrently's DROP INDEX CONCURRENTLY waits for its table
    lock: the index is still there and valid. Migrating back does not build it again (no
    "already exists"): the same index stays."""
    migrate("tests", "0003")
    built = index_state("beta_slow_idx")
    assert built is not None and built[1] is True
    blocker = Session(application_name="beta-blocker").hold("tests_beta", "SHARE UPDATE EXCLUSIVE")
    sessions.append(blocker)
    _kill_while_waiting_on("tests_beta", "tests", "0004", scenario="concurrent")
    blocker.release()
    assert index_state("beta_slow_idx") == built

    out = migrate("tests", "0003")
    assert "rolling back half-applied tests.0004_drop" in out
    assert "nothing of it to unapply" in out
    assert index_state("beta_slow_idx") == built
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
def test_migrating_back_from_a_drop_cut_short_half_way(scenario, sessions):
    """kill -9 while DROP INDEX CONCURRENTLY waits for a reader, after it marked the index
    INVALID: migrating back finishes the drop, then builds the index again (a valid one)."""
    migrate("tests", "0003")
    built = index_state("beta_slow_idx")
    reader = Session(application_name="beta-reader").hold("tests_beta")
    sessions.append(reader)
    _kill_while_waiting_on(None, "tests", "0004", scenario="concurrent")
    reader.release()
    assert index_state("beta_slow_idx")[1] is False

    migrate("tests", "0003")
    rebuilt = index_state("beta_slow_idx")
    assert rebuilt is not None and rebuilt[1] is True and rebuilt[0] != built[0]
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []


@pytest.mark.scenario("concurrent")
def test_an_index_that_existed_before_the_build_is_not_taken_for_its_own(scenario):
    """CREATE INDEX CONCURRENTLY fails with "already exists": the index of that name was
    there before (made by hand, on another column). The report does not say the statement
    built it, and the next migrate neither counts it as done nor drops it: it fails the same
    way until the index is out of the way."""
    migrate("tests", "0002")
    query("CREATE INDEX alpha_name_idx ON tests_alpha (id)")
    theirs = index_state("alpha_name_idx")

    for _ in range(2):
        with pytest.raises(CommandError) as raised:
            migrate("tests", "0003")
        report = str(raised.value)
        assert 'relation "alpha_name_idx" already exists' in report
        assert (
            "(nothing of it committed; it built nothing: a relation named alpha_name_idx "
            "existed before it ran, and is left as it is)" in report
        ), report
        assert "was built" not in report
        assert index_state("alpha_name_idx") == theirs
        assert [row[-1] for row in progress_rows()] == [None]  # nothing in flight

    query("DROP INDEX alpha_name_idx")
    migrate("tests", "0003")
    assert query(
        "SELECT indexdef LIKE '%%(name)' FROM pg_indexes WHERE indexname = 'alpha_name_idx'"
    ) == [(True,)]
    assert applied()[-1] == "0003_index"
    assert progress_rows() == []
