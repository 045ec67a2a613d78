"""The Django sdist (its tests/ directory) and a virtualenv that runs it with pgmigrate.

Each Django series gets its own virtualenv (``.venv-django-suite-5.2``): Django installed
from the sdist whose tests run, the PostgreSQL requirements of the suite, and pgmigrate
installed editable, so the runs always test the working tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Downloaded sdists, unpacked sources and results (git-ignored).
CACHE = ROOT / ".django-suite"

#: Interpreters tried for each Django series, best first: the newest it supports.
SUITE_PYTHONS = {
    "4.2": ("3.12", "3.11", "3.10"),
    "5.2": ("3.13", "3.12", "3.11", "3.10"),
    "6.0": ("3.13", "3.12"),
}
DEFAULT_PYTHONS = ("3.13", "3.12", "3.11", "3.10")
#: Packages of the sdist's tests/requirements/py3.txt that the runs need, besides
#: postgres.txt: tblib pickles the tracebacks of failures in parallel workers.
PY3_NEEDED = ("tblib",)
STAMP = ".django-suite.json"


class PrepareError(Exception):
    """The suite could not be set up (no interpreter, no sdist, a failed install)."""


@dataclass(frozen=True)
class Suite:
    """A Django version ready to run: its unpacked tests and the venv to run them with."""

    series: str
    django_version: str
    python: Path
    python_version: str
    tests_dir: Path


def log(message: str) -> None:
    print(f"django_suite: {message}", file=sys.stderr, flush=True)


def default_venv(series: str) -> Path:
    return ROOT / f".venv-django-suite-{series}"


def find_python(version: str) -> str | None:
    """pyenv's interpreter for ``version`` (e.g. ``"3.13"``), else ``python3.13`` on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(
        root.glob(f"{version}.*/bin/python{version}"),
        key=lambda path: _version_key(path.parent.parent.name),
        reverse=True,
    )
    if candidates:
        return str(candidates[0])
    return shutil.which(f"python{version}")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def _run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, text=True, check=False, **kwargs)  # type: ignore[call-overload]


def _python_version(python: Path | str) -> str:
    result = _run(
        [str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def ensure_venv(series: str, venv: Path, python: str | None) -> tuple[Path, str]:
    """Create ``venv`` unless it exists with a suitable interpreter; return its python."""
    wanted = [python] if python else list(SUITE_PYTHONS.get(series, DEFAULT_PYTHONS))
    venv_python = venv / "bin" / "python"
    current = _python_version(venv_python) if venv_python.exists() else ""
    if current and any(
        current == w or current.startswith(w + ".") or _is_path_to(w, current) for w in wanted
    ):
        return venv_python, current
    interpreter = None
    for candidate in wanted:
        interpreter = candidate if "/" in candidate else find_python(candidate)
        if interpreter:
            break
    if not interpreter:
        raise PrepareError(
            f"no Python {' or '.join(wanted)} found for Django {series} (pyenv or PATH)"
        )
    if venv.exists():
        if not (venv / "pyvenv.cfg").exists():
            raise PrepareError(f"{venv} exists and is not a virtualenv: not touching it")
        log(f"recreating {venv.name}: it has Python {current or '?'}")
        shutil.rmtree(venv)
    log(f"creating {venv.name} with {interpreter}")
    if _run([interpreter, "-m", "venv", str(venv)]).returncode != 0:
        raise PrepareError(f"could not create {venv} with {interpreter}")
    return venv_python, _python_version(venv_python)


def _is_path_to(candidate: str, version: str) -> bool:
    """True if ``candidate`` is an interpreter path (not a version) running ``version``."""
    return "/" in candidate and _python_version(candidate) == version


_SDIST = re.compile(r"^django-(\d+\.\d+(?:\.\d+)?)\.tar\.gz$", re.IGNORECASE)


def cached_sdists(series: str) -> list[tuple[str, Path]]:
    """(version, path) of the cached sdists of ``series``, newest first."""
    found = []
    directory = CACHE / "sdist"
    if directory.is_dir():
        for path in directory.iterdir():
            match = _SDIST.match(path.name)
            if match and (match[1] == series or match[1].startswith(series + ".")):
                found.append((match[1], path))
    return sorted(found, key=lambda item: _version_key(item[0]), reverse=True)


def download_sdist(series: str, venv_python: Path, offline: bool) -> tuple[str, Path]:
    """The newest sdist of ``series`` on the package index (or the cached one, offline)."""
    if not offline:
        # The venv's own pip, so the index's Requires-Python filter matches the interpreter
        # that will run the suite (Django 6.0 is invisible to a 3.11 pip).
        log(f"looking up the latest Django {series}.x sdist")
        result = _run(
            [
                str(venv_python),
                *("-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", "--dest", str(CACHE / "sdist")),
                f"django~={series}.0",
            ]
        )
        if result.returncode != 0:
            log("pip download failed; falling back to the cached sdist, if any")
    cached = cached_sdists(series)
    if not cached:
        raise PrepareError(f"no Django {series} sdist (download failed, nothing cached)")
    return cached[0]


def unpack(version: str, sdist: Path) -> Path:
    """Unpack ``sdist`` once under the cache; return its tests/ directory."""
    target = CACHE / "src"
    tests_dir = target / f"django-{version}" / "tests"
    marker = target / f".django-{version}.unpacked"
    if not marker.exists():
        log(f"unpacking {sdist.name}")
        shutil.rmtree(target / f"django-{version}", ignore_errors=True)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as archive:
            if hasattr(tarfile, "data_filter"):
                archive.extractall(target, filter="data")
            else:  # pragma: no cover - Python without extraction filters
                archive.extractall(target)
        marker.touch()
    if not (tests_dir / "runtests.py").exists():
        raise PrepareError(f"{tests_dir} has no runtests.py")
    return tests_dir


def requirements(tests_dir: Path) -> list[str]:
    """Installer arguments for the suite's requirements on PostgreSQL (psycopg 3)."""
    args = ["-r", str(tests_dir / "requirements" / "postgres.txt")]
    py3 = (tests_dir / "requirements" / "py3.txt").read_text().splitlines()
    for name in PY3_NEEDED:
        line = next((line for line in py3 if re.match(rf"{name}\b", line.strip())), name)
        args.append(line.split("#")[0].strip())
    return args


def install(venv: Path, venv_python: Path, version: str, sdist: Path, tests_dir: Path) -> None:
    """Install Django from ``sdist``, its PostgreSQL requirements and pgmigrate (editable),
    unless the venv already has exactly that."""
    args = [str(sdist), "-e", str(ROOT), *requirements(tests_dir)]
    stamp = {
        "django": version,
        "args": args,
        "pgmigrate_pyproject": hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest(),
        "postgres.txt": (tests_dir / "requirements" / "postgres.txt").read_text(),
    }
    stamp_path = venv / STAMP
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return
    log(f"installing Django {version}, the suite's PostgreSQL requirements and pgmigrate")
    result = _run([str(venv_python), "-m", "pip", "install", "--quiet", *args])
    if result.returncode != 0:
        raise PrepareError(f"pip install failed in {venv}")
    check = _run(
        [str(venv_python), "-c", "import django; print(django.get_version())"],
        capture_output=True,
    )
    if check.stdout.strip() != version:
        raise PrepareError(f"{venv} has Django {check.stdout.strip()!r}, not {version}")
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")


def prepare(series: str, venv: Path, python: str | None, offline: bool = False) -> Suite:
    """Everything needed to run Django ``series``'s suite; raises PrepareError."""
    venv_python, python_version = ensure_venv(series, venv, python)
    version, sdist = download_sdist(series, venv_python, offline)
    tests_dir = unpack(version, sdist)
    install(venv, venv_python, version, sdist, tests_dir)
    return Suite(series, version, venv_python, python_version, tests_dir)
