"""Scenario "overhead": many small migrations from zero, nothing blocking them.

The app ``benchoverhead`` is generated at run time into a temporary directory: a model with
``count`` nullable integer fields, a ``CreateModel`` migration and one ``AddField``
migration per field. Both implementations apply them all; the bench times the child.
"""

from __future__ import annotations

import compileall
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import server
from bench.migrate import migrate
from bench.options import Options
from bench.report import Metric, ScenarioResult, Target
from bench.scenarios import benchapp

APP = "benchoverhead"
TABLE = "bench_overhead_item"

METRICS = [
    Metric("wall_ms", "migrate wall time (ms)", 0),
    Metric("startup_ms", 'start -> "Running migrations:" (ms)', 0),
    Metric("applying_ms", '"Running migrations:" -> exit (ms)', 0),
    Metric("per_migration_ms", "per migration (ms)", 2),
    # The applying phase in three: pgmigrate's one-time set-up falls in the first (with the
    # first migration), its per-migration cost in the second, its wind-down in the third.
    Metric("first_ms", '"Running migrations:" -> first "OK" (ms)', 1),
    Metric("between_ms", 'first -> last "OK", per migration (ms)', 2),
    Metric("wind_down_ms", 'last "OK" -> exit (ms)', 1),
]


def _field(number: int) -> str:
    return f"f{number:03d}"


def write_app(directory: Path, count: int) -> None:
    """Write the ``benchoverhead`` app with ``count`` AddField migrations into ``directory``."""
    package = directory / APP
    migrations = package / "migrations"
    migrations.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (migrations / "__init__.py").write_text("")
    fields = "".join(
        f"    {_field(n)} = models.IntegerField(null=True)\n" for n in range(1, count + 1)
    )
    (package / "models.py").write_text(
        "from django.db import models\n\n\nclass Item(models.Model):\n"
        f"{fields}\n    class Meta:\n        db_table = {TABLE!r}\n"
    )
    (migrations / "0001_initial.py").write_text(
        "from django.db import migrations, models\n\n\n"
        "class Migration(migrations.Migration):\n"
        "    initial = True\n"
        "    operations = [migrations.CreateModel('Item', [\n"
        "        ('id', models.AutoField(primary_key=True, serialize=False)),\n"
        f"    ], options={{'db_table': {TABLE!r}}})]\n"
    )
    previous = "0001_initial"
    for number in range(1, count + 1):
        name = f"{number + 1:04d}_item_{_field(number)}"
        (migrations / f"{name}.py").write_text(
            "from django.db import migrations, models\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"    dependencies = [({APP!r}, {previous!r})]\n"
            "    operations = [migrations.AddField(\n"
            f"        'item', {_field(number)!r}, models.IntegerField(null=True)\n"
            "    )]\n"
        )
        previous = name


@contextlib.contextmanager
def generated_app(count: int) -> Iterator[dict[str, str]]:
    """Generate the app in a temporary directory; yield the env that makes Django load it."""
    with tempfile.TemporaryDirectory(prefix="pgmigrate-bench-app-") as directory:
        write_app(Path(directory), count)
        compileall.compile_dir(directory, quiet=1)  # as an installed project would be
        yield {"PYTHONPATH": directory, "BENCH_EXTRA_APPS": APP}


def reset(url: str) -> None:
    server.execute(url, f"DROP TABLE IF EXISTS {TABLE}")
    benchapp.forget(url, APP)


def measure(url: str, implementation: str, env: dict[str, str], count: int) -> dict:
    """Apply all migrations of the generated app from zero; time the child."""
    reset(url)
    run = migrate(implementation, url, APP, env=env)
    running = next(at for at, line in run.lines if "Running migrations:" in line)
    applying = run.ended - running
    # "  Applying app.name... OK" (with pgmigrate's timing or notes, if any, after it).
    oks = [at for at, line in run.lines if line.startswith("  Applying") and " OK" in line]
    return {
        "wall_ms": run.wall * 1000,
        "startup_ms": (running - run.started) * 1000,
        "applying_ms": applying * 1000,
        "per_migration_ms": applying * 1000 / (count + 1),
        "first_ms": (oks[0] - running) * 1000,
        "between_ms": (oks[-1] - oks[0]) * 1000 / count,
        "wind_down_ms": (run.ended - oks[-1]) * 1000,
        "watcher_started": "pgmigrate: migrating with" in run.output,
    }


def run(url: str, options: Options) -> ScenarioResult:
    count = options.overhead_migrations
    result = ScenarioResult(
        name="overhead",
        title=(
            f"overhead: {count + 1} small migrations from zero (a CreateModel, then one "
            f"AddField each on a small table), nothing blocking, {options.overhead_runs} runs each"
        ),
        metrics=METRICS,
        targets=[Target("migrate wall time, pgmigrate / plain", "ratio:wall_ms", 1.03, unit="")],
    )
    result.notes.append(
        "plain: the project without pgmigrate in INSTALLED_APPS (pgactivity and pglock stay); "
        "bare: without those either, for reference"
    )
    with generated_app(count) as env:
        migrate("plain", url, APP, "zero", env=env)  # creates django_migrations if needed
        for number in range(1, options.overhead_runs + 1):
            for implementation in ("pgmigrate", "plain", "bare"):
                measured = measure(url, implementation, env, count)
                result.runs.append({"group": implementation, "run": number, **measured})
                print(
                    f"  overhead {number}/{options.overhead_runs} {implementation:<9} "
                    f"{measured['wall_ms']:8.0f} ms",
                    file=sys.stderr,
                )
        reset(url)
    return result
