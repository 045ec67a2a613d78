"""Text from the database reaches the terminal and the logs escaped: no control characters
(terminal escape sequences, forged lines) from query text, role names or server errors."""

import logging
import re
from collections.abc import Iterator

import pytest
from django.db import DatabaseError
from django.test import override_settings

from pgmigrate.errors import migrate_error
from pgmigrate.text import printable
from tests.helpers import MigrateThread, Session, migrate, query, wait_until

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

#: Sets the terminal's title, clears the screen, turns the text red; then a forged line.
EVIL = "\x9b\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED\x1b[0m\r\n  Applying tests.0002_add_fields... OK"
#: A role whose name holds an escape sequence.
ROLE = "pgm_evil\x1b[31mrole"
#: Control characters (C0 but the newline, DEL, C1) and bidirectional overrides.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text", "plain text"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("line\nbreak\r\ttab", "line\\nbreak\\r\\ttab"),
        ("\x00\x07\x7f\x85\x9b", "\\x00\\x07\\x7f\\x85\\x9b"),
        ("left\u202eright\u2028", "left\\u202eright\\u2028"),
        ("caf\u00e9 \u65e5\u672c \U0001f600", "caf\u00e9 \u65e5\u672c \U0001f600"),
        (None, "None"),
    ],
)
def test_printable(text, shown):
    assert printable(text) == shown


def test_printable_keeps_what_it_is_told_to():
    assert printable("one\ntwo\x1b", keep="\n") == "one\ntwo\\x1b"


def test_command_error_messages_are_escaped():
    error = migrate_error(f"pgmigrate: failed: {EVIL}\nsecond line", DatabaseError("x"))
    assert not RAW_CONTROL.search(str(error))
    assert str(error).endswith("\nsecond line")


@pytest.fixture
def evil_role(scenario) -> Iterator[str]:
    """A login role whose name holds an escape sequence, allowed to read the tests tables."""
    query(f'CREATE ROLE "{ROLE}" LOGIN')
    try:
        yield ROLE
    finally:
        query(f'DROP OWNED BY "{ROLE}" CASCADE')
        query(f'DROP ROLE "{ROLE}"')


@override_settings(PGMIGRATE_BLOCKING_ACTION="show", PGMIGRATE_LOCK_TIMEOUT=30)
def test_show_escapes_query_text_and_role_name(evil_role, sessions, caplog):
    caplog.set_level(logging.INFO, logger="pgmigrate")
    migrate("tests", "0001", verbosity=0)
    query(f'GRANT SELECT ON tests_beta TO "{evil_role}"')
    blocker = Session(user=evil_role, application_name="app\x1b[2J")
    sessions.append(blocker)
    blocker.connection.set_autocommit(False)
    blocker.execute(f"SELECT count(*) FROM tests_beta WHERE %s <> '{EVIL}'", ["x"])

    run = MigrateThread("tests", "0002")
    wait_until(lambda: "blocks the migration" in run.output.getvalue(), what="Show printed")
    blocker.release()
    out = run.finish()

    assert not RAW_CONTROL.search(out), ascii(out)
    assert "user: pgm_evil\\x1b[31mrole" in out
    # The preview collapses whitespace (the line break too) and escapes the rest.
    assert "\\x9b\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mRED\\x1b[0m Applying" in out
    forged = [line for line in out.splitlines() if line.startswith("  Applying tests.0002")]
    assert len(forged) == 1, out  # the real line only
    shown = [r for r in caplog.records if getattr(r, "event", None) == "blocker_shown"]
    assert shown and shown[0].usename == ROLE  # fields keep the raw value
    assert not any(RAW_CONTROL.search(r.getMessage()) for r in caplog.records)


@override_settings(PGMIGRATE_LOCK_TIMEOUT=30)
def test_terminate_escapes_what_it_prints(evil_role, sessions):
    migrate("tests", "0001", verbosity=0)
    query(f'GRANT SELECT ON tests_beta TO "{evil_role}"')
    blocker = Session(user=evil_role, application_name=EVIL[:60])
    sessions.append(blocker)
    blocker.connection.set_autocommit(False)
    blocker.execute(f"SELECT count(*) FROM tests_beta WHERE '{EVIL}' <> ''")

    out = migrate("tests", "0002")

    assert f"terminated 1 session blocking the migration: pid {blocker.pid}" in out
    assert not RAW_CONTROL.search(out), ascii(out)
