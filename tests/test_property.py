"""Property: over random mixes of sessions, exactly the unprotected blockers are ended."""

import contextlib
import threading
from dataclasses import dataclass

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import override_settings
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests import roles
from tests.helpers import (
    MigrateThread,
    Session,
    columns,
    is_alive,
    is_waiting_on_lock,
    locked_tables,
    migrate,
    query,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "migrator"])

#: Kinds of session: what it holds, and whether pgmigrate may end it.
KINDS = {
    "blocker": ("tests_beta", "ACCESS SHARE"),
    "protected": ("tests_beta", "ACCESS SHARE"),
    "bystander": ("tests_gamma", "ROW EXCLUSIVE"),
    "other-database": ("tests_beta", "ACCESS SHARE"),
}


def expected_columns(table: str) -> set[str]:
    """The columns Django's migration state says ``table`` has after 0002."""
    state = MigrationLoader(connection).project_state(("tests", "0002_add_fields"))
    model = next(m for m in state.apps.get_models() if m._meta.db_table == table)
    return {field.column for field in model._meta.local_fields}


@override_settings(PGMIGRATE_PROTECTED={"application_name": ["protected-*"]})
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(kinds=st.lists(st.sampled_from(sorted(KINDS)), max_size=6))
def test_exactly_the_unprotected_blockers_are_ended(scenario, kinds):
    migrate("tests", "0001", verbosity=0)
    migrate("tests", "0001", database="other", verbosity=0)
    sessions = []
    try:
        for number, kind in enumerate(kinds):
            table, mode = KINDS[kind]
            using = "other" if kind == "other-database" else "default"
            session = Session(using, application_name=f"{kind}-{number}")
            sessions.append((kind, session.hold(table, mode)))
        run = MigrateThread("tests", "0002")
        protected = [s for kind, s in sessions if kind == "protected"]
        if protected:
            wait_until(
                lambda: run.output.getvalue().count("is protected") == len(protected),
                what="each protected blocker was shown",
            )
            # It waits for them out of the lock queue (pgmigrate.aside).
            wait_until(
                lambda: "stepped out of the lock queue" in run.output.getvalue(),
                what="migrate stepped aside",
            )
            wait_until(
                lambda: not is_waiting_on_lock(run.backend_pid), what="migrate left the queue"
            )
            for session in protected:
                session.release()
        run.finish()

        for kind, session in sessions:
            assert is_alive(session.pid, session.using) == (kind != "blocker"), (kind, kinds)
        for table in ("tests_alpha", "tests_beta", "tests_gamma"):
            assert columns(table) == expected_columns(table)
    finally:
        for _, session in sessions:
            session.close()
        migrate("tests", "0001", verbosity=0)


# Mixes of holders, queued sessions, protected, hidden and undecidable sessions, prepared
# transactions and other databases, for a superuser and for a least-privilege migrating role.

#: What a session does before migrate starts.
ACTIVITIES = {
    "hold": "SELECT count(*) /* {marker} */ FROM tests_beta",  # ACCESS SHARE, then idle
    "queue-exclusive": "/* {marker} */ LOCK TABLE tests_beta IN ACCESS EXCLUSIVE MODE",
    "queue-write": "/* {marker} */ LOCK TABLE tests_beta IN ROW EXCLUSIVE MODE",
    "prepared": "",  # a prepared transaction that read tests_beta
    "other-database": "",  # holds tests_beta of the other database
    "bystander": "/* {marker} */ LOCK TABLE tests_gamma IN ROW EXCLUSIVE MODE",
}
#: Protected by name (a column every role sees), or by query (a column PostgreSQL hides
#: from a least-privilege role for other roles' sessions: undecidable for it).
MIXED_PROTECTED = {"application_name": ["protected-*"], "query": ["*keep-me*"]}


@dataclass
class Case:
    activity: str
    role: str
    by_name: bool  # protected by its application_name
    by_query: bool  # its query matches the rule on query
    session: Session | None = None
    thread: threading.Thread | None = None
    gid: str | None = None

    def blocks(self) -> bool:
        return self.activity in ("hold", "queue-exclusive", "queue-write", "prepared")

    def endable(self, superuser: bool) -> bool:
        """May pgmigrate end it: a session of the migration's database in its way, that is
        not protected, and whose protection it can decide (it sees all of its columns)."""
        visible = superuser or self.role == roles.MIGRATOR
        endable = self.activity in ("hold", "queue-exclusive", "queue-write")
        return endable and visible and not (self.by_name or self.by_query)


def _start(case: Case, number: int) -> None:
    name = f"{'protected-' if case.by_name else ''}{case.activity}-{number}"
    marker = "keep-me" if case.by_query else "plain"
    if case.activity == "prepared":
        case.gid = f"{roles.GID_PREFIX}-{number}"
        roles.prepare(case.gid, user=case.role, comment=marker)
        return
    if case.activity == "other-database":
        case.session = Session("other", application_name=name).hold("tests_beta")
        return
    session = case.session = Session(user=case.role, application_name=name)
    session.connection.set_autocommit(False)
    statement = ACTIVITIES[case.activity].format(marker=marker)
    if not case.activity.startswith("queue"):
        session.execute(statement)
        return
    case.thread, _ = roles.run_in_thread(lambda: session.execute(statement))
    wait_until(
        lambda: is_waiting_on_lock(session.pid) or "tests_beta" in locked_tables(session.pid),
        what=f"{name} queues or holds",
    )


def _release(case: Case) -> None:
    """End what ``case`` holds or waits for (the test's job for sessions pgmigrate leaves)."""
    if case.gid is not None and query(
        "SELECT 1 FROM pg_prepared_xacts WHERE gid = %s", [case.gid]
    ):
        query(f"ROLLBACK PREPARED {roles.literal(case.gid)}")
    if case.thread is not None and case.session is not None:
        query("SELECT pg_cancel_backend(%s)", [case.session.pid])  # its lock wait, if any
        case.thread.join(30)
    if case.session is not None and is_alive(case.session.pid, case.session.using):
        case.session.release()


@pytest.fixture(params=sorted(roles.ALIASES))
def migrating(request, scenario):
    with roles.created():
        yield roles.ALIASES[request.param]


@override_settings(PGMIGRATE_PROTECTED=MIXED_PROTECTED, PGMIGRATE_LOCK_TIMEOUT=30)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mix=st.lists(
        st.tuples(
            st.sampled_from(sorted(ACTIVITIES)),
            st.sampled_from([roles.APP, roles.MIGRATOR]),
            st.booleans(),
            st.booleans(),
        ),
        max_size=6,
    )
)
def test_only_endable_holders_are_ended_and_every_blocker_is_named(migrating, mix):
    """0 sessions ended that are protected, undecidable, queued (while queued: in these
    mixes a holder is always in front of them) or in another database; prepared
    transactions never ended; every blocker named in the output."""
    if any(activity == "prepared" for activity, *_ in mix):
        assume(roles.prepared_transactions_allowed())
    superuser = migrating == "default"
    roles.apply_0001(migrating)
    migrate("tests", "0001", database="other", verbosity=0)
    # Requests that may wait come last, so that the others are granted.
    cases = sorted((Case(*drawn) for drawn in mix), key=lambda c: c.activity.startswith("queue"))
    try:
        for number, case in enumerate(cases):
            _start(case, number)
        run = MigrateThread("tests", "0002", database=migrating)
        left = [case for case in cases if case.blocks() and not case.endable(superuser)]

        def named(case: Case) -> bool:
            out = run.output.getvalue()
            if case.gid is not None:
                return f"prepared transaction {roles.literal(case.gid)}" in out
            return case.session is not None and f"pid {case.session.pid} (" in out

        for case in left:
            wait_until(lambda case=case: named(case), what=f"{case} was named")
        for case in left:
            _release(case)
        out = run.finish()

        assert all(named(case) for case in cases if case.blocks()), (cases, out)
        ended = "\n".join(line for line in out.splitlines() if "pgmigrate: terminated" in line)
        assert "queued ahead of the migration" not in ended, out
        for case in cases:
            if case.session is None:
                continue
            alive = is_alive(case.session.pid, case.session.using)
            assert alive == (not case.endable(superuser)), (case, out)
        for table in ("tests_alpha", "tests_beta", "tests_gamma"):
            assert columns(table) == expected_columns(table)
    finally:
        for case in cases:
            with contextlib.suppress(Exception):
                _release(case)
            if case.session is not None:
                case.session.close()
            if case.thread is not None:
                case.thread.join(30)
        roles.rollback_prepared()
        migrate("tests", "0001", database=migrating, verbosity=0)
