"""``--lock-plan`` where the catalog as it is now is not what a statement finds: a column
whose type an earlier pending migration changes, an index one creates, views that read or
use what a statement touches. Unknown (``pgmigrate.L004``), never a wrong known answer; each
test shows on the server what a known answer would have missed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import Session, migrate, query
from tests.test_lockplan import L004, locks, operations, plan_json, rule_ids, statements

pytestmark = [
    pytest.mark.django_db(transaction=True, databases=["default", "other"]),
    pytest.mark.scenario("lock_plan_review"),
]

ALPHA, BETA, GAMMA = (f"public.tests_{name}" for name in ("alpha", "beta", "gamma"))


@pytest.fixture
def viewed(scenario: str) -> Iterator[dict[str, Any]]:
    """0002 applied (a view of alpha, a materialized view of beta); the plan of 0003 and
    0004."""
    migrate("tests", "0002", verbosity=0)
    yield plan_json()


def _statement(document: dict[str, Any], migration: str, number: int, text: str) -> dict:
    """The statement of operation ``number`` of ``migration`` whose SQL has ``text``."""
    (found,) = [
        statement
        for statement in statements(operations(document, migration)[number - 1])
        if text in statement["sql"]
    ]
    return found


def _unknown(statement: dict[str, Any], note: str) -> None:
    assert statement["known"] is False, statement
    assert statement["locks"] == [] and statement["holders"] == []
    assert L004 in rule_ids(statement)
    assert note in statement["notes"][0], statement["notes"]


def _locks_of(session: Session, sql: str) -> dict[str, str]:
    """What ``sql`` locks (the catalog's relations aside; a relation it drops is named by
    its oid), run in a transaction rolled back."""
    session.connection.set_autocommit(False)
    try:
        session.execute(sql)
        return dict(
            session.execute(
                "SELECT relation::regclass::text, mode FROM pg_locks"
                " WHERE pid = pg_backend_pid() AND locktype = 'relation'"
                " AND relation::regclass::text NOT LIKE 'pg\\_%'"
            )
        )
    finally:
        session.release()


def test_a_type_an_earlier_migration_changes_is_not_judged_from_the_catalog(
    viewed: dict[str, Any], sessions: list
) -> None:
    """text -> integer (0003) -> text (0004): the catalog's text -> text is catalog only,
    but integer -> text rewrites gamma."""
    first = _statement(viewed, "0003_first", 1, "TYPE integer")
    assert first["known"] and locks(first)[GAMMA] == "ACCESS EXCLUSIVE"
    assert GAMMA in first["rewrites"]
    back = _statement(viewed, "0004_then", 1, "TYPE text")
    _unknown(back, "an earlier statement of the plan creates, renames or changes")
    assert "public.tests_gamma.name" in back["notes"][0]
    migrate("tests", "0003", verbosity=0)
    session = Session()
    sessions.append(session)
    file = "SELECT relfilenode FROM pg_class WHERE relname = 'tests_gamma'"
    session.connection.set_autocommit(False)
    try:
        before = session.execute(file)
        session.execute(back["sql"])
        assert session.execute(file) != before, "integer to text rewrites the table"
    finally:
        session.release()


def test_dropping_an_index_an_earlier_migration_creates(
    viewed: dict[str, Any], sessions: list
) -> None:
    """RemoveIndex and RemoveIndexConcurrently (``DROP INDEX [CONCURRENTLY] IF EXISTS``) of
    the indexes 0003 creates: not nothing, unknown; CONCURRENTLY runs outside a transaction
    and waits for older transactions."""
    plain = _statement(viewed, "0004_then", 2, "gamma_name_idx")
    _unknown(plain, "public.gamma_name_idx")
    assert plain["transactional"] is True
    concurrent = _statement(viewed, "0004_then", 3, "alpha_id_idx")
    _unknown(concurrent, "public.alpha_id_idx")
    assert concurrent["transactional"] is False
    assert concurrent["waits_for_snapshots"] is True
    migrate("tests", "0003", verbosity=0)
    session = Session()
    sessions.append(session)
    assert _locks_of(session, plain["sql"])["tests_gamma"] == "AccessExclusiveLock"


def test_reading_or_writing_through_a_view_is_unknown(
    viewed: dict[str, Any], sessions: list
) -> None:
    """UPDATE and SELECT of the view lock alpha too (the view's query)."""
    update = _statement(viewed, "0003_first", 4, "UPDATE")
    _unknown(update, "it writes view public.tests_alpha_names")
    select = _statement(viewed, "0003_first", 5, "SELECT")
    _unknown(select, "it reads view public.tests_alpha_names")
    session = Session()
    sessions.append(session)
    assert _locks_of(session, update["sql"])["tests_alpha"] == "RowExclusiveLock"
    assert _locks_of(session, select["sql"])["tests_alpha"] == "AccessShareLock"


def test_removing_a_field_a_materialized_view_uses_is_unknown(
    viewed: dict[str, Any], sessions: list
) -> None:
    """``DROP COLUMN ... CASCADE`` (RemoveField's SQL up to Django 5.2) drops the
    materialized view too, under ACCESS EXCLUSIVE: its readers wait, not only beta's."""
    remove = _statement(viewed, "0003_first", 6, "DROP COLUMN")
    _unknown(remove, "the column is used by public.tests_beta_names: CASCADE drops it too")
    session = Session()
    sessions.append(session)
    ((view,),) = query("SELECT 'tests_beta_names'::regclass::oid")
    held = _locks_of(session, remove["sql"])
    assert held["tests_beta"] == "AccessExclusiveLock"
    assert held[str(view)] == "AccessExclusiveLock"
