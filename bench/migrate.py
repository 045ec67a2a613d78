"""Running ``manage.py migrate`` in a child process, exactly as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The implementations compared, by their Django settings module. "plain" is the project
#: without pgmigrate in INSTALLED_APPS (its dependencies pgactivity and pglock stay);
#: "bare" has neither (the "overhead" scenario reports it too, for reference).
IMPLEMENTATIONS = {
    "pgmigrate": "bench.settings_pgmigrate",
    "plain": "bench.settings_plain",
    "bare": "bench.settings_bare",
}


class MigrateFailed(RuntimeError):
    """The ``migrate`` child exited with a non-zero status."""


@dataclass
class MigrateRun:
    """A ``migrate`` child process whose output lines are timestamped as they arrive."""

    implementation: str
    args: list[str]
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    #: (time.monotonic(), line) for each line of stdout and stderr, merged.
    lines: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    returncode: int | None = None

    def __post_init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._seen = threading.Condition()

    @property
    def wall(self) -> float:
        """Seconds from starting the child to its exit."""
        return self.ended - self.started

    def start(self) -> MigrateRun:
        env = {
            **os.environ,
            **self.env,
            "DATABASE_URL": self.database_url,
            "DJANGO_SETTINGS_MODULE": IMPLEMENTATIONS[self.implementation],
            "PYTHONUNBUFFERED": "1",  # lines arrive when printed, for the timestamps
        }
        if "PYTHONPATH" in self.env and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.pathsep.join([self.env["PYTHONPATH"], os.environ["PYTHONPATH"]])
        self.started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "manage.py", "migrate", *self.args, "--no-input"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, name="bench-migrate-output")
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            with self._seen:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self._seen.notify_all()
        self._process.wait()
        with self._seen:
            self.ended = time.monotonic()
            self.returncode = self._process.returncode
            self._seen.notify_all()

    def wait_for_line(self, text: str, timeout: float) -> float | None:
        """Wait until a line containing ``text`` arrives; return its time, or None if the
        child exits (or ``timeout`` passes) first."""

        def found() -> float | None:
            return next((at for at, line in self.lines if text in line), None)

        with self._seen:
            self._seen.wait_for(lambda: found() or self.returncode is not None, timeout)
            return found()

    def exited(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the child to exit; True if it has."""
        with self._seen:
            return self._seen.wait_for(lambda: self.returncode is not None, timeout)

    def wait(self, timeout: float | None = None) -> MigrateRun:
        """Wait for the child to exit; raise ``MigrateFailed`` if it failed."""
        assert self._reader is not None
        self._reader.join(timeout)
        if self._reader.is_alive():
            self.kill()
            raise MigrateFailed(
                f"migrate {' '.join(self.args)} timed out ({self.implementation}), its output "
                "so far:\n" + self.output
            )
        if self.returncode != 0:
            raise MigrateFailed(
                f"migrate {' '.join(self.args)} ({self.implementation}) exited with status "
                f"{self.returncode}:\n" + self.output
            )
        return self

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        if self._reader is not None:
            self._reader.join()

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)


def migrate(
    implementation: str, database_url: str, *args: str, env: dict[str, str] | None = None
) -> MigrateRun:
    """Run ``manage.py migrate *args`` to the end and return the finished run."""
    return MigrateRun(implementation, list(args), database_url, env or {}).start().wait(300)
