"""One trial: a fresh database, ``migrate`` with a fault, ``migrate`` again, compare.

``prepare`` first runs the steps cleanly three times: the first run is the reference
outcome, the other two must match it (or the comparison itself is not trustworthy), and all
three time the run. Most fault moments are drawn from the times migrations ran in the clean
runs, the others from the whole run (start-up, post-migrate signals, between commands).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chaos.child import Child, last_error_line, migration_at
from chaos.faults import FAULTS
from chaos.outcome import APPS, Outcome, capture, differences
from chaos.server import Server

FORWARDS = [["migrate", "--no-input"]]
#: Backwards, app by app, dependants first (as a deploy script would run them).
BACKWARDS = [["migrate", app, "zero", "--no-input"] for app in reversed(APPS)]
#: The database that backwards trials copy: the chaos project migrated forwards.
FORWARDS_TEMPLATE = "chaos_forwards"
CLEAN_RUNS = 3
#: Share of fault moments drawn from the whole run rather than while migrations run.
ANYWHERE = 0.15


class HarnessError(RuntimeError):
    """The harness cannot run trials (a clean run failed or clean runs disagree)."""


@dataclass
class Attempt:
    """The steps of one run (one ``manage.py`` process per step, stopping at a failure)."""

    children: list[Child] = field(default_factory=list)
    injected: bool = False
    #: Seconds from the first step's start to the injection.
    at: float | None = None
    fault: str = ""
    landed: str = ""

    @property
    def status(self) -> int | None:
        """The last step's exit status; None if it was killed for running too long."""
        last = self.children[-1]
        return None if last.timed_out else last.returncode

    @property
    def ok(self) -> bool:
        return all(child.returncode == 0 and not child.timed_out for child in self.children)

    @property
    def seconds(self) -> float:
        return sum(child.seconds for child in self.children)

    def transcript(self) -> str:
        return "".join(
            f"$ python -m chaos.project {' '.join(child.args)}\n{child.output}"
            f"[exit status {child.returncode}{', timed out' if child.timed_out else ''}, "
            f"{child.seconds:.2f} s]\n"
            for child in self.children
        )

    def error(self) -> str:
        """A short reason for a failed run."""
        last = self.children[-1]
        if last.timed_out:
            return f"timed out ({' '.join(last.args)}, killed)"
        return f"exit {last.returncode}: {last_error_line(last.output)}"


def where(child: Child, steps: list[list[str]]) -> str:
    """Where ``child`` is, from its output so far; prefixed with its step if there are several."""
    place = migration_at(child.output)
    return f"{' '.join(child.args[1:3])}: {place}" if len(steps) > 1 else place


#: The output line after which a process applies (or unapplies) migrations.
RUNNING = "Running migrations:"


@dataclass(frozen=True)
class Moment:
    """When to inject a fault: ``seconds`` after step ``step`` started, or, with ``after``,
    after that step printed ``after``. Anchored to the step, not to the first step's start:
    start-up time varies with the machine's load more than migrations do."""

    step: int
    seconds: float
    after: str = ""

    def __str__(self) -> str:
        anchor = f"{self.after!r}" if self.after else "its start"
        return f"step {self.step + 1}, {self.seconds:.3f} s after {anchor}"


def run_steps(
    steps: list[list[str]],
    env: dict[str, str],
    *,
    at: Moment | None = None,
    inject: Callable[[Child], str] | None = None,
) -> Attempt:
    """Run ``steps`` one after the other (stopping at a failure); at the moment ``at``, call
    ``inject`` with the step's process if it still runs."""
    attempt = Attempt()
    started = time.monotonic()
    try:
        for index, args in enumerate(steps):
            child = Child(args, env).start()
            attempt.children.append(child)
            if at is not None and inject is not None and index == at.step:
                anchor = child.wait_output(at.after) if at.after else 0.0
                if anchor is not None and not child.wait(
                    child.started + anchor + at.seconds - time.monotonic()
                ):
                    attempt.at = time.monotonic() - started
                    attempt.fault = inject(child)
                    attempt.injected = True
                    attempt.landed = where(child, steps)  # once done: a restart takes a while
            child.wait()
            if child.returncode != 0:
                break
    finally:
        for child in attempt.children:
            child.kill()
    return attempt


@dataclass
class Plan:
    """What every trial of a session runs, and against what."""

    server: Server
    steps: list[list[str]]
    #: Plain Django ``migrate`` (``PGMIGRATE_PATCH_MIGRATE = False``) instead of pgmigrate.
    plain: bool
    #: Settings added to every first run (``--setting``).
    first_settings: dict[str, Any]
    seed: int
    kinds: list[str]
    template: str = "template0"
    reference: Outcome | None = None
    #: The clean runs' durations: total, and per step (medians, seconds).
    clean_seconds: float = 0.0
    step_seconds: list[float] = field(default_factory=list)
    #: Per step, how long it applied migrations in the clean runs (from ``RUNNING`` to the
    #: last "OK"; medians, seconds).
    migrating: list[float] = field(default_factory=list)

    def env(self, database: str, settings: dict[str, Any], pg_options: str = "") -> dict[str, str]:
        return {
            "DATABASE_URL": self.server.url(database),
            "DJANGO_SETTINGS_MODULE": "chaos.project.settings",
            "CHAOS_SETTINGS": json.dumps(
                {**({"PGMIGRATE_PATCH_MIGRATE": False} if self.plain else {}), **settings}
            ),
            "CHAOS_PG_OPTIONS": pg_options,
        }


def prepare(plan: Plan, *, backwards: bool) -> None:
    """Make the template (backwards), the reference outcome and the fault window."""
    server = plan.server
    if backwards:
        server.create_database(FORWARDS_TEMPLATE)
        attempt = run_steps(FORWARDS, plan.env(FORWARDS_TEMPLATE, {}))
        if not attempt.ok:
            raise HarnessError(f"forwards migrate failed:\n{attempt.transcript()}")
        plan.template = FORWARDS_TEMPLATE
    totals, steps, migrating = [], [], []
    for number in range(CLEAN_RUNS):
        database = f"chaos_clean_{number}"
        server.create_database(database, plan.template)
        attempt = run_steps(plan.steps, plan.env(database, {}))
        if not attempt.ok:
            raise HarnessError(f"a clean run failed:\n{attempt.transcript()}")
        outcome = capture(server, database)
        if number == 0:
            check = run_steps([["makemigrations", "--check", "--dry-run"]], plan.env(database, {}))
            if not check.ok:
                raise HarnessError(f"models and migrations disagree:\n{check.transcript()}")
        server.drop_database(database)
        if plan.reference is None:
            plan.reference = outcome
        elif found := differences(plan.reference, outcome):
            details = "\n".join(difference.detail for difference in found)
            raise HarnessError(f"two clean runs differ, comparisons are unreliable:\n{details}")
        totals.append(attempt.seconds)
        steps.append([child.seconds for child in attempt.children])
        migrating.append([child.migrating() for child in attempt.children])
    plan.clean_seconds = statistics.median(totals)
    plan.step_seconds = [statistics.median(column) for column in zip(*steps, strict=True)]
    plan.migrating = [statistics.median(column) for column in zip(*migrating, strict=True)]


def fault_moment(plan: Plan, rng: random.Random) -> Moment:
    """Mostly while a step applies migrations; ``ANYWHERE`` of the time anywhere in the run."""
    if rng.random() < ANYWHERE or not sum(plan.migrating):
        point = rng.uniform(0.0, plan.clean_seconds)
        for step, seconds in enumerate(plan.step_seconds):
            if point <= seconds:
                return Moment(step, point)
            point -= seconds
        return Moment(len(plan.step_seconds) - 1, plan.step_seconds[-1])
    point = rng.uniform(0.0, sum(plan.migrating))
    for step, seconds in enumerate(plan.migrating):
        if point <= seconds:
            return Moment(step, point, RUNNING)
        point -= seconds
    return Moment(len(plan.migrating) - 1, plan.migrating[-1], RUNNING)


@dataclass
class Trial:
    """The result of one trial."""

    number: int
    kind: str
    fault: str
    #: The planned moment (``Moment``, as text), and when the fault was injected (seconds
    #: after the first step's start; None if it was not).
    moment: str
    at: float | None
    injected: bool
    landed: str
    first_status: int | None
    rerun_status: int | None
    recovered: bool
    reasons: list[str]
    details: str
    seconds: float
    first_output: str = field(repr=False)
    rerun_output: str = field(repr=False)

    @property
    def interrupted(self) -> bool:
        return self.first_status != 0

    @property
    def in_migration(self) -> bool:
        """Whether the fault landed while a migration was being applied (or unapplied)."""
        return self.landed.rpartition(": ")[2].startswith("in ")


def kind_of(plan: Plan, number: int) -> str:
    """Trial ``number`` (from 1) has the faults in turn."""
    return plan.kinds[(number - 1) % len(plan.kinds)]


def run_trial(plan: Plan, number: int) -> Trial:
    started = time.monotonic()
    server = plan.server
    kind = kind_of(plan, number)
    rng = random.Random(f"{plan.seed}:{number}")
    fault = FAULTS[kind](rng)
    at = fault_moment(plan, rng) if fault.timed else None
    database = f"chaos_trial_{number}"
    server.create_database(database, plan.template)
    try:
        settings, pg_options = fault.settings(plan.plain)
        env = plan.env(database, {**plan.first_settings, **settings}, pg_options)
        inject = (lambda child: fault.inject(server, database, child)) if fault.timed else None
        try:
            first = run_steps(plan.steps, env, at=at, inject=inject)
        finally:
            fault.remove(server)
        server.wait_ready()
        rerun = run_steps(plan.steps, plan.env(database, {}))
        reasons = [] if rerun.ok else [f"re-run {rerun.error()}"]
        assert plan.reference is not None
        found = differences(plan.reference, capture(server, database))
    finally:
        server.drop_database(database)
    reasons += [difference.summary for difference in found]
    if fault.timed:
        description = first.fault or f"not injected: the run ended before {at}"
        landed = first.landed or "after the run"
    else:
        description = fault.describe()
        landed = where(first.children[-1], plan.steps)
    if fault.note:
        description += f"; {fault.note}"
    return Trial(
        number=number,
        kind=kind,
        fault=description,
        moment=str(at or ""),
        at=first.at if fault.timed else None,
        injected=first.injected or not fault.timed,
        landed=landed,
        first_status=first.status,
        rerun_status=rerun.status,
        recovered=not reasons,
        reasons=reasons,
        details="\n\n".join(f"== {d.what}\n{d.detail}" for d in found),
        seconds=time.monotonic() - started,
        first_output=first.transcript(),
        rerun_output=rerun.transcript(),
    )
