"""What a cut-short CONCURRENTLY statement leaves, and how pgmigrate clears it before it runs
the statement again (``pgmigrate.concurrent``), on real indexes."""

import threading

import pytest
from django.db import DatabaseError, connection

from pgmigrate import concurrent
from pgmigrate.sql import parse
from tests.crashes import index_state
from tests.helpers import Session, migrate, query, wait_until
from tests.scenarios import SLOW_FUNCTION

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


def statement(sql):
    (found,) = parse(sql)
    return found


@pytest.fixture
def invalid_index(scenario):
    """``tests_alpha_uniq``: INVALID, left by a unique build that met duplicate names."""
    migrate("tests", "0001")
    query("INSERT INTO tests_alpha (name) VALUES ('twice'), ('twice')")
    with pytest.raises(DatabaseError):
        query("CREATE UNIQUE INDEX CONCURRENTLY tests_alpha_uniq ON tests_alpha (name)")
    assert index_state("tests_alpha_uniq")[1] is False
    return "CREATE UNIQUE INDEX CONCURRENTLY tests_alpha_uniq ON tests_alpha (name)"


def test_an_invalid_index_of_the_build_is_dropped_before_it_runs_again(invalid_index):
    build = statement(invalid_index)
    assert concurrent.leftovers(connection, build) == (
        "an INVALID index tests_alpha_uniq was left; the next migrate drops and rebuilds it"
    )
    assert concurrent.prepare(connection, build) is False  # to be run again
    assert index_state("tests_alpha_uniq") is None


def test_a_valid_index_of_the_build_counts_as_done(scenario):
    migrate("tests", "0001")
    query("CREATE INDEX tests_alpha_name ON tests_alpha (name)")
    build = statement('CREATE INDEX CONCURRENTLY "tests_alpha_name" ON "tests_alpha" (name)')
    assert concurrent.prepare(connection, build) is True
    assert "was built; the next migrate counts it as done" in concurrent.leftovers(
        connection, build
    )


def test_a_build_without_a_name_is_reported_not_guessed(scenario):
    migrate("tests", "0001")
    build = statement("CREATE INDEX CONCURRENTLY ON tests_alpha (name)")
    assert concurrent.prepare(connection, build) is False
    assert "does not name its index" in concurrent.leftovers(connection, build)


def test_an_index_another_session_builds_is_never_dropped(scenario, sessions):
    migrate("tests", "0001")
    snapshot = Session(application_name="old-snapshot")
    sessions.append(snapshot)
    snapshot.connection.set_autocommit(False)
    snapshot.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    snapshot.execute("SELECT count(*) FROM tests_gamma")
    builder = Session(application_name="other-builder")
    sessions.append(builder)
    sql = "CREATE INDEX CONCURRENTLY tests_alpha_busy ON tests_alpha (name)"
    thread = threading.Thread(target=builder.execute, args=(sql,), daemon=True)
    thread.start()
    wait_until(
        lambda: query("SELECT 1 FROM pg_stat_progress_create_index WHERE pid = %s", [builder.pid]),
        what="the other session builds its index",
    )
    # Its progress shows before the index's catalog entry commits (under load, visibly so).
    wait_until(lambda: index_state("tests_alpha_busy"), what="the index is in the catalog")
    assert concurrent.prepare(connection, statement(sql)) is False
    assert index_state("tests_alpha_busy") is not None  # left alone
    snapshot.release()
    thread.join(30)
    assert index_state("tests_alpha_busy")[1] is True


def test_a_drop_of_an_index_that_is_gone_counts_as_done(scenario):
    migrate("tests", "0001")
    drop = statement("DROP INDEX CONCURRENTLY IF EXISTS tests_alpha_gone")
    assert concurrent.prepare(connection, drop) is True
    assert concurrent.leftovers(connection, drop) is None


def test_a_half_dropped_index_is_reported(invalid_index):
    drop = statement("DROP INDEX CONCURRENTLY tests_alpha_uniq")
    assert concurrent.prepare(connection, drop) is False  # still there: drop it
    assert concurrent.leftovers(connection, drop) == (
        "the index tests_alpha_uniq was left INVALID; the next migrate drops it"
    )


def test_reindex_leftovers_are_reported_and_dropped(scenario):
    migrate("tests", "0001")
    query(SLOW_FUNCTION)
    query("INSERT INTO tests_alpha (name) SELECT 'row ' || n FROM generate_series(1, 40) n")
    query("CREATE INDEX tests_alpha_slow ON tests_alpha (tests_slow(name))")
    reindex = "REINDEX INDEX CONCURRENTLY tests_alpha_slow"
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = '50ms'")
        with pytest.raises(DatabaseError, match="statement timeout"):
            cursor.execute(reindex)
        cursor.execute("RESET statement_timeout")
    left = query("SELECT relname FROM pg_class WHERE relname LIKE 'tests\\_alpha\\_slow\\_cc%%'")
    assert left, "the cut-short REINDEX left its new index"
    message = concurrent.leftovers(connection, statement(reindex))
    assert message.startswith("INVALID indexes") and "were left" in message
    assert concurrent.prepare(connection, statement(reindex)) is False
    assert not query(
        "SELECT relname FROM pg_class WHERE relname LIKE 'tests\\_alpha\\_slow\\_cc%%'"
    )
    assert index_state("tests_alpha_slow")[1] is True
