"""One structured event per fact: a log record on the ``pgmigrate`` logger, a Django signal,
and the per-migration figures of the end-of-run summary and JSON report."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.management.base import CommandError

from pgmigrate import signals
from pgmigrate.text import printable

logger = logging.getLogger("pgmigrate")
logger.addHandler(logging.NullHandler())  # a library: the project decides where logs go

#: Event names; each has a signal of the same name in ``pgmigrate.signals``.
EVENTS = (
    "migration_started",
    "migration_finished",
    "blocked",
    "blocker_shown",
    "blocker_ended",
    "action_failed",
    "lock_timeout",
    "retry",
    "resumed",
    "stepped_aside",
    "waiting_aside",
    "stepped_back",
    "statement_progress",
)
WARNING_EVENTS = {"blocker_ended", "action_failed", "lock_timeout", "retry"}


@dataclass
class MigrationFigures:
    """What happened while one migration ran."""

    migration: str
    status: str = "running"
    duration: float = 0.0
    lock_wait: float = 0.0
    blockers_ended: list[int] = field(default_factory=list)
    blockers_cancelled: list[int] = field(default_factory=list)
    blockers_shown: list[int] = field(default_factory=list)
    actions_failed: int = 0
    lock_timeouts: int = 0
    retries: int = 0
    #: Times the migration left the lock queue (``pgmigrate.aside``), and seconds out of it.
    steps_aside: int = 0
    aside_wait: float = 0.0
    resumed_at: int | None = None

    @property
    def noteworthy(self) -> bool:
        return bool(
            self.lock_wait
            or self.blockers_ended
            or self.blockers_cancelled
            or self.blockers_shown
            or self.actions_failed
            or self.lock_timeouts
            or self.resumed_at
            or self.steps_aside
            or self.status not in ("applied", "unapplied", "faked")
        )


class RunEvents:
    """Emits the events of one ``migrate`` run and keeps its figures."""

    def __init__(self, command: Any, *, database: str, backend_pid: int | None, log_queries: bool):
        self.command = command
        self.database = database
        self.backend_pid = backend_pid
        self.log_queries = log_queries
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self._started = time.monotonic()
        self._migration_started: dict[str, float] = {}
        self.migrations: dict[str, MigrationFigures] = {}
        self.current: str | None = None
        self.status = "running"
        self._lock = threading.Lock()
        self._local = threading.local()

    def emit(self, event: str, message: str, **fields: Any) -> None:
        """Log ``message`` with the event's fields, send its signal, update the figures."""
        assert event in EVENTS, event
        if not self.log_queries:
            fields.pop("query", None)
        fields.setdefault("migration", getattr(self._local, "migration", None) or self.current)
        fields.update(event=event, database=self.database, backend_pid=self.backend_pid)
        with self._lock:
            self._count(event, fields)
        level = logging.WARNING if event in WARNING_EVENTS else logging.INFO
        if logger.isEnabledFor(level):
            # The message is for people: escaped (see pgmigrate.text). Fields keep raw values.
            logger.log(level, printable(message, keep="\n"), extra=fields)
        responses = getattr(signals, event).send_robust(sender=type(self.command), **fields)
        for receiver, response in responses:
            if isinstance(response, Exception):  # a receiver's bug must not stop migrate
                logger.error(
                    "pgmigrate: receiver %r of the %s signal failed: %r",
                    receiver,
                    event,
                    response,
                    exc_info=response,
                )

    def _figures(self, migration: str | None) -> MigrationFigures | None:
        if migration is None:
            return None
        return self.migrations.setdefault(migration, MigrationFigures(migration))

    def _count(self, event: str, fields: dict[str, Any]) -> None:
        figures = self._figures(fields.get("migration"))
        if figures is None:
            return
        if event == "migration_started":
            self._migration_started[figures.migration] = time.monotonic()
            figures.status = "running"
        elif event == "migration_finished":
            figures.status = fields["status"]
            figures.duration = fields["duration"]
        elif event == "blocker_ended":
            if fields.get("action") == "Cancel":
                figures.blockers_cancelled.append(fields["blocker_pid"])
            else:
                figures.blockers_ended.append(fields["blocker_pid"])
        elif event == "blocker_shown":
            figures.blockers_shown.append(fields["blocker_pid"])
        elif event == "action_failed":
            figures.actions_failed += 1
        elif event == "lock_timeout":
            figures.lock_timeouts += 1
        elif event == "retry":
            figures.retries += 1
        elif event == "stepped_aside":
            figures.steps_aside += 1
        elif event == "stepped_back":
            figures.aside_wait += fields["waited"]
        elif event == "resumed":
            figures.resumed_at = fields["operation"]

    @contextlib.contextmanager
    def about(self, migration: str | None) -> Iterator[None]:
        """Attribute the events this thread emits meanwhile to ``migration``."""
        previous = getattr(self._local, "migration", None)
        self._local.migration = migration
        try:
            yield
        finally:
            self._local.migration = previous

    # Helpers for the command ------------------------------------------------------------

    def migration_started(self, migration: str) -> None:
        self.current = migration
        self.emit("migration_started", f"pgmigrate: applying {migration}", migration=migration)

    def migration_finished(self, status: str) -> None:
        migration = self.current
        if migration is None:
            return
        started = self._migration_started.get(migration, time.monotonic())
        duration = round(time.monotonic() - started, 6)
        lock_wait = self.migrations[migration].lock_wait if migration in self.migrations else 0
        self.emit(
            "migration_finished",
            f"pgmigrate: {migration} {status} in {duration:.3f} s (lock wait {lock_wait:.3f} s)",
            migration=migration,
            status=status,
            duration=duration,
            lock_wait=round(lock_wait, 6),
        )
        self.current = None

    def add_lock_wait(self, seconds: float, migration: str | None) -> None:
        with self._lock:
            figures = self._figures(migration)
            if figures is not None:
                figures.lock_wait += seconds

    # The end of the run ---------------------------------------------------------------

    def summary_lines(self) -> list[str]:
        """One line per migration that waited, acted, resumed or did not apply."""
        lines = []
        for figures in self.migrations.values():
            if not figures.noteworthy:
                continue
            parts = [
                f"{figures.migration}: {figures.status} in {figures.duration:.3f} s",
                f"lock wait {figures.lock_wait:.3f} s",
            ]
            if figures.blockers_ended:
                parts.append(f"ended {len(figures.blockers_ended)} blocker(s)")
            if figures.blockers_cancelled:
                parts.append(
                    f"cancelled the query of {len(figures.blockers_cancelled)} blocker(s)"
                )
            if figures.blockers_shown:
                parts.append(f"shown {len(figures.blockers_shown)} blocker(s)")
            if figures.actions_failed:
                parts.append(f"{figures.actions_failed} action error(s)")
            if figures.lock_timeouts:
                parts.append(f"{figures.lock_timeouts} lock timeout(s), {figures.retries} retries")
            if figures.steps_aside:
                parts.append(
                    f"stepped out of the lock queue {figures.steps_aside} time(s) for "
                    f"{figures.aside_wait:.3f} s"
                )
            if figures.resumed_at:
                parts.append(f"resumed at operation {figures.resumed_at}")
            lines.append("  " + ", ".join(parts))
        return lines

    def report(self) -> dict[str, Any]:
        """The run as a JSON-serialisable dict (``--pgmigrate-report``)."""
        return {
            "database": self.database,
            "backend_pid": self.backend_pid,
            "started_at": self.started_at.isoformat(),
            "duration": round(time.monotonic() - self._started, 6),
            "status": self.status,
            "migrations": [
                {
                    **asdict(figures),
                    "lock_wait": round(figures.lock_wait, 6),
                    "aside_wait": round(figures.aside_wait, 6),
                }
                for figures in self.migrations.values()
            ],
        }

    def write_report(self, path: str) -> None:
        """Write ``report()`` as JSON to the file ``path`` (raises ``OSError``)."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.report(), handle, indent=2)
            handle.write("\n")


def check_report_path(path: str) -> None:
    """Raise ``CommandError`` unless the file ``path`` (of ``--pgmigrate-report``) can be
    written: checked by opening it for appending before anything runs (a file that did not
    exist is removed again), so that a run is not lost to a typo in the path."""
    existed = os.path.lexists(path)
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CommandError(
            f"pgmigrate: --pgmigrate-report: cannot write to {path!r}: "
            f"{printable(reason)}. Nothing was migrated."
        ) from exc
    if not existed:
        with contextlib.suppress(OSError):
            os.remove(path)
