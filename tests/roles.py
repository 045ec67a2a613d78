"""Roles of least-privilege set-ups (as on managed PostgreSQL), for the tests that run
``migrate`` as a superuser and as a role that is not one; prepared transactions; sessions
whose statements wait in a thread of their own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from tests.helpers import Session, migrate, query

#: The least-privilege migrating role (the ``migrator`` database alias logs in as it), a role
#: of the application, and a replication role: none of them superuser.
MIGRATOR, APP, REPLICATOR = "pgm_migrator", "pgm_app", "pgm_replicator"
#: Prefix of the prepared transactions the tests make (and always roll back).
GID_PREFIX = "pgmigrate-test"
#: The database alias ``migrate`` runs with, by migrating role.
ALIASES = {"superuser": "default", "least-privilege": "migrator"}


def _create_role(name: str, attributes: str = "") -> None:
    if not query("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]):
        query(f"CREATE ROLE {name} LOGIN NOSUPERUSER {attributes}")


def _drop_role(name: str) -> None:
    query(f"DROP OWNED BY {name} CASCADE")
    query(f"DROP ROLE {name}")


@contextlib.contextmanager
def created() -> Iterator[None]:
    """The three roles, the migrating one granted pg_signal_backend (as the docs advise);
    dropped afterwards, with what they own and the prepared transactions of the tests."""
    _create_role(MIGRATOR)
    _create_role(APP)
    _create_role(REPLICATOR, "REPLICATION")
    query(f"GRANT CREATE ON SCHEMA public TO {MIGRATOR}")
    query(f"GRANT ALL ON TABLE django_migrations TO {MIGRATOR}")
    query(f"GRANT ALL ON SEQUENCE django_migrations_id_seq TO {MIGRATOR}")
    query(f"GRANT pg_signal_backend TO {MIGRATOR}")
    try:
        yield
    finally:
        rollback_prepared()
        query("DELETE FROM django_migrations WHERE app = 'tests'")
        for role in (MIGRATOR, APP, REPLICATOR):
            _drop_role(role)


def apply_0001(using: str) -> None:
    """Apply the tests app's 0001 as the role of ``using``; let the roles use its tables."""
    migrate("tests", "0001", database=using, verbosity=0)
    for role in (APP, MIGRATOR, REPLICATOR):
        query(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}")
        query(f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}")


def literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def prepare(gid: str, *, user: str, table: str = "tests_beta", comment: str = "") -> None:
    """Leave a prepared transaction of ``user`` that read ``table`` (holding ACCESS SHARE)."""
    session = Session(user=user, application_name="two-phase")
    try:
        session.connection.set_autocommit(False)
        session.execute(f"SELECT count(*) /* {comment} */ FROM {table}")
        session.execute(f"PREPARE TRANSACTION {literal(gid)}")
    finally:
        session.close()


def prepared_transactions_allowed() -> bool:
    return query("SHOW max_prepared_transactions") != [("0",)]


def rollback_prepared() -> None:
    """Roll back the prepared transactions the tests made (in this database)."""
    for (gid,) in query(
        "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s AND database = current_database()",
        [f"{GID_PREFIX}%"],
    ):
        query(f"ROLLBACK PREPARED {literal(gid)}")


def run_in_thread(func: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``func`` in a thread (a statement that waits); the dict gets its ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            func()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
