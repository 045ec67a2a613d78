"""The pgmigrate demo: one migration, run with plain Django's ``migrate`` and with pgmigrate.

``make demo`` (``make demo ARGS=--help``) or ``python -m demo [options]``.

It creates its own database, ``pgmigrate_demo``, on a throwaway PostgreSQL (or on the server
of ``$DATABASE_URL``), with a table of 10,000 accounts, and drops it at the end. An app (a
process of its own, demo/app.py: 4 connections, each reading the table every 10 ms) runs
throughout. Before each run, a "report" session reads the table too and stays idle in its
transaction: the ``ALTER TABLE`` of migration 0002 (add a column) must wait for it, and
every app query queues behind that ``ALTER``.

1. Django's own ``migrate`` waits. Here the demo rolls the report back after ``--hold``
   seconds; a forgotten session can stay for hours.
2. The migration is unapplied, a new report opens, and pgmigrate's ``migrate`` applies
   ``--blocking-action`` to it.

Every number printed is measured in that run.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WIDTH = 78
MIGRATION = ("demo", "0002")
#: The ``application_name`` of the blocking session, as pgmigrate and pg_stat_activity show it.
REPORT = "report"
#: The comment that marks the demo's database as the demo's, so a re-run may drop it.
MARK = "made by the pgmigrate demo (python -m demo); dropped when it ends"


def say(text: str = "") -> None:
    print(text, flush=True)


def wrapped(text: str) -> str:
    """``text`` filled to WIDTH, not splitting "3.0 s" or options such as "--hold"."""
    text = re.sub(r"(\d) (m?s)\b", "\\1\xa0\\2", text)
    filled = textwrap.fill(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False)
    return filled.replace("\xa0", " ")


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description=(
            "Add a column to a table that an idle-in-transaction session holds a lock on, "
            "once with plain Django's migrate and once with pgmigrate, and compare the "
            "app's worst query stall. Uses its own database 'pgmigrate_demo' on a throwaway "
            "PostgreSQL, or on the server of $DATABASE_URL, and drops it at the end."
        ),
    )
    parser.add_argument(
        "--blocking-action",
        choices=["terminate", "cancel", "show", "none"],
        default="terminate",
        help="what pgmigrate does with the blocking session (default: %(default)s)",
    )
    parser.add_argument(
        "--hold",
        type=float,
        default=3.0,
        metavar="SECONDS",
        help=(
            "the demo rolls the blocking session back this long after migrate starts, if "
            "it is still there, so that a waiting migrate ends (default: %(default)s)"
        ),
    )
    args = parser.parse_args(argv)
    if args.hold < 0:
        parser.error("--hold must be >= 0")
    return args


class Indented(io.TextIOBase):
    """A text stream that indents what migrate prints, to set it apart from the demo's text."""

    def __init__(self, prefix: str = "    ") -> None:
        self.prefix = prefix
        self.line_start = True

    def write(self, text: str) -> int:
        for piece in text.splitlines(keepends=True):
            print(self.prefix + piece if self.line_start else piece, end="", flush=True)
            self.line_start = piece.endswith("\n")
        return len(text)


class App:
    """The app, a process of its own (demo/app.py) that reads the accounts table; keeps each
    query's (start, seconds, ok)."""

    def __init__(self, url: str) -> None:
        self.queries: list[tuple[float, float, bool]] = []
        self.changed = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "demo.app", url],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.ended = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            started, seconds, ok = line.split()
            with self.changed:
                self.queries.append((float(started), float(seconds), ok == "1"))
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def wait_past(self, moment: float) -> None:
        """Wait until the app has finished a query that started after ``moment``."""
        with self.changed:
            self.changed.wait_for(
                lambda: self.ended or (bool(self.queries) and self.queries[-1][0] > moment)
            )
            if self.ended:
                raise SystemExit(
                    f"demo: the app process ended (exit status {self.process.wait()})"
                )

    def during(self, start: float, end: float) -> list[tuple[float, bool]]:
        """(seconds, ok) of the queries that ran at some point between start and end."""
        with self.changed:
            return [
                (seconds, ok)
                for began, seconds, ok in self.queries
                if began < end and began + seconds > start
            ]

    def stop(self) -> None:
        """Close its stdin (it ends after its current query) and wait for it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        self.reader.join()


class Report(threading.Thread):
    """A session that reads the accounts table, then stays idle in its transaction.

    ``hold_from`` starts the clock: after ``hold`` seconds the session rolls back (the report
    ends), unless ``stop`` comes first.
    """

    def __init__(self, hold: float) -> None:
        super().__init__(daemon=True)
        self.hold = hold
        self.hold_from = threading.Event()
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.pid = 0
        self.rolled_back_at: float | None = None  # when the demo ended it (--hold)
        self.terminated = False  # someone else ended the session
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import DatabaseError, connections

        conn = connections.create_connection("default")
        conn.settings_dict = {
            **conn.settings_dict,
            "OPTIONS": {**conn.settings_dict["OPTIONS"], "application_name": REPORT},
        }
        try:
            conn.set_autocommit(False)
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid(), count(*) FROM demo_account")
                self.pid = cursor.fetchone()[0]
        except BaseException as exc:
            self.error = exc
            conn.close()
            return
        finally:
            self.ready.set()
        self.hold_from.wait()
        held = not self.stop.wait(self.hold)
        try:
            conn.rollback()
            if held:
                self.rolled_back_at = time.monotonic()
        except DatabaseError:
            self.terminated = True
        finally:
            conn.close()


@dataclass
class Run:
    """What one migrate run did, as the demo measured it."""

    title: str
    action: str | None  # pgmigrate's --blocking-action; None for plain Django
    started: float
    took: float
    stalls: list[tuple[float, bool]]  # the app's queries meanwhile: (seconds, ok)
    report: Report
    ended_at: float | None  # when pgmigrate said it ended the report (blocker_ended)
    lock_wait: float | None  # how long pgmigrate saw the migration wait (migration_finished)
    stepped_aside: bool = False  # pgmigrate left the lock queue (stepped_aside)

    def what_happened(self) -> str:
        """The blocking session's fate, in words."""
        report = self.report
        session = f"the blocking session (pid {report.pid}, application {REPORT!r}"
        if report.terminated and self.ended_at is not None:
            waited = "" if self.lock_wait is None else f" (the ALTER waited {ms(self.lock_wait)})"
            return (
                f"{session}, idle in transaction) was ended "
                f"{ms(self.ended_at - self.started)} after migrate started{waited}; its "
                "transaction was rolled back and the ALTER went ahead."
            )
        if report.terminated:
            return f"{session}) was ended by someone other than the demo."
        if report.rolled_back_at is None:
            return f"{session}) was still open when migrate finished."
        left_alone = {
            None: "was left alone",
            "show": "was shown and left alone (--blocking-action show)",
            "cancel": (
                "had its query cancelled (--blocking-action cancel), which does nothing to a "
                "session idle in transaction"
            ),
            "none": "was left alone (--blocking-action none)",
        }[self.action]
        held = report.rolled_back_at - self.started
        if self.stepped_aside:
            return (
                f"{session}, idle in transaction) {left_alone}. pgmigrate stepped the ALTER out "
                "of the lock queue, so the app's queries went on, and ran it again once the "
                f"demo rolled the session back {held:.1f} s after migrate started (--hold)."
            )
        return (
            f"{session}, idle in transaction) {left_alone}. The ALTER waited for it, and the "
            "app's queries queued behind the ALTER, until the demo rolled the session back "
            f"{held:.1f} s after migrate started (--hold). A forgotten session can stay for "
            "hours, and the app would stall as long."
        )


def create_database() -> None:
    """Create the demo's database (dropping one that an interrupted demo left behind)."""
    from django.conf import settings
    from django.db import connections

    server = connections["server"]
    name = settings.DEMO_DATABASE
    quoted = server.ops.quote_name(name)
    with server.cursor() as cursor:
        cursor.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            [name],
        )
        row = cursor.fetchone()
        if row is not None:
            if row[0] != MARK:
                raise SystemExit(
                    f"demo: database {name!r} exists and was not made by the demo; "
                    "drop it or use another server"
                )
            cursor.execute(f"DROP DATABASE {quoted} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {quoted}")
        cursor.execute(f"COMMENT ON DATABASE {quoted} IS %s", [MARK])
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    say(f"PostgreSQL {version}; database {name!r}, made for this run and dropped at its end.")


def drop_database() -> None:
    from django.conf import settings
    from django.db import connections

    connections.close_all()
    server = connections["server"]
    with server.cursor() as cursor:
        name = server.ops.quote_name(settings.DEMO_DATABASE)
        cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    server.close()


def migrate_once(title: str, command: Any, app: App, hold: float, action: str | None) -> Run:
    """Run ``migrate demo 0002`` with ``command`` while a report blocks it and the app reads."""
    from django.core.management import call_command

    from pgmigrate import signals

    report = Report(hold)
    report.start()
    report.ready.wait()
    if report.error is not None:
        raise report.error
    ended: list[float] = []
    lock_waits: list[float] = []
    stepped: list[bool] = []

    def on_blocker_ended(sender: Any, blocker_pid: int, action: str, **fields: Any) -> None:
        if blocker_pid == report.pid and action == "Terminate":
            ended.append(time.monotonic())

    def on_migration_finished(sender: Any, lock_wait: float, **fields: Any) -> None:
        lock_waits.append(lock_wait)

    def on_stepped_aside(sender: Any, **fields: Any) -> None:
        stepped.append(True)

    signals.blocker_ended.connect(on_blocker_ended, weak=False)
    signals.migration_finished.connect(on_migration_finished, weak=False)
    signals.stepped_aside.connect(on_stepped_aside, weak=False)
    options = {} if action is None else {"blocking_action": action}
    out = Indented()
    started = time.monotonic()
    report.hold_from.set()
    try:
        call_command(command, *MIGRATION, stdout=out, stderr=out, **options)
    finally:
        finished = time.monotonic()
        signals.blocker_ended.disconnect(on_blocker_ended)
        signals.migration_finished.disconnect(on_migration_finished)
        signals.stepped_aside.disconnect(on_stepped_aside)
        report.stop.set()
        report.join()
    app.wait_past(finished)  # the queries queued behind the ALTER have finished
    return Run(
        title=title,
        action=action,
        started=started,
        took=finished - started,
        stalls=app.during(started, finished),
        report=report,
        ended_at=ended[0] if ended else None,
        lock_wait=lock_waits[0] if lock_waits else None,
        stepped_aside=bool(stepped),
    )


def compare(runs: Sequence[Run]) -> None:
    say("\nMeasured in this run      " + "".join(f"{run.title:>14}" for run in runs))
    rows = {
        "migrate took": [ms(run.took) for run in runs],
        "app's worst query stall": [ms(max(s for s, _ in run.stalls)) for run in runs],
        "app queries meanwhile": [str(len(run.stalls)) for run in runs],
        "... of which failed": [str(sum(not ok for _, ok in run.stalls)) for run in runs],
    }
    for label, values in rows.items():
        say(f"  {label:<24}" + "".join(f"{value:>14}" for value in values))
    for run in runs:
        say()
        say(wrapped(f"{run.title}: {run.what_happened()}"))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
    import django

    django.setup()  # starts a throwaway PostgreSQL unless $DATABASE_URL is set
    from django.conf import settings
    from django.core.management import call_command

    from pgmigrate.command import DjangoMigrateCommand

    say("=" * WIDTH)
    say("pgmigrate demo: add a column to a table that a forgotten session holds a lock on")
    say("=" * WIDTH)
    create_database()
    app: App | None = None
    try:
        call_command("migrate", "demo", "0001", verbosity=0)
        app = App(settings.DEMO_DATABASE_URL)
        app.wait_past(time.monotonic())
        say(
            "The table demo_account has 10,000 rows. An app (4 connections) reads it every\n"
            f"2.5 ms. Before each migrate, a session (application {REPORT!r}) reads it too and\n"
            "stays idle in its transaction, holding a lock that ALTER TABLE must wait for."
        )
        say("\n1. Plain Django: migrate demo 0002 (Django's own migrate command)")
        plain = migrate_once("plain Django", DjangoMigrateCommand(), app, args.hold, None)
        call_command("migrate", "demo", "0001", verbosity=0)  # unapply, for the second run
        say(f"\n2. pgmigrate: migrate demo 0002 --blocking-action {args.blocking_action}")
        with_pgmigrate = migrate_once("pgmigrate", "migrate", app, args.hold, args.blocking_action)
    finally:
        if app is not None:
            app.stop()
        drop_database()
    compare([plain, with_pgmigrate])


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\ndemo: interrupted (its database is dropped)", file=sys.stderr)
        sys.exit(130)
