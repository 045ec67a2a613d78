"""``manage.py`` commands of the chaos project as child processes with timestamped output.

Each child runs ``python -m chaos.project <args>`` from the repository root in a session of
its own (a Ctrl-C in the terminal reaches the harness only, which then kills it). Output is
read in chunks, not lines: Django prints ``Applying x...`` and ``OK`` on one line, and the
harness wants to know which migration was running at a given moment.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: Seconds a child may run before the harness kills it.
TIMEOUT = 120.0

_MIGRATION = re.compile(r"(Unapplying|Applying) (\S+?)\.\.\.( OK)?")


@dataclass
class Child:
    """One ``python -m chaos.project`` process."""

    args: list[str]
    env: dict[str, str]
    #: (seconds since start, text) for each chunk of merged stdout/stderr.
    chunks: list[tuple[float, str]] = field(default_factory=list)
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None
    timed_out: bool = False

    def __post_init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._output_changed = threading.Condition()
        self._output_ended = False

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def start(self) -> Child:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        self.started = time.monotonic()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "chaos.project", *self.args],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, name="chaos-child-output", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while data := os.read(fd, 65536):
            with self._output_changed:
                self.chunks.append((time.monotonic() - self.started, decoder.decode(data)))
                self._output_changed.notify_all()
        with self._output_changed:
            self._output_ended = True
            self._output_changed.notify_all()

    def wait_output(self, text: str) -> float | None:
        """Wait until the output contains ``text``; seconds from start to the chunk that
        completed it, or None if the output ended first (or ``TIMEOUT`` passed)."""

        def seen() -> float | None:
            output = ""
            for at, chunk in self.chunks:
                output += chunk
                if text in output:
                    return at
            return None

        with self._output_changed:
            limit = TIMEOUT - (time.monotonic() - self.started)
            self._output_changed.wait_for(
                lambda: self._output_ended or seen() is not None, max(limit, 0)
            )
            return seen()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds (None: no limit of its own); True once it has exited.

        A child still running ``TIMEOUT`` seconds after its start is killed (``timed_out``).
        """
        assert self._process is not None
        limit = max(TIMEOUT - (time.monotonic() - self.started), 0)
        budget = limit if timeout is None else min(max(timeout, 0.0), limit)
        try:
            self._process.wait(budget)
        except subprocess.TimeoutExpired:
            if budget < limit:
                return False
            self.timed_out = True
            self.kill()
        self._finish()
        return True

    def _finish(self) -> None:
        assert self._process is not None and self._reader is not None
        self._reader.join(10)
        self.returncode = self._process.returncode
        self.seconds = time.monotonic() - self.started

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the child if it still runs, and reap it."""
        if self._process is not None and self._process.poll() is None:
            self.signal(signal.SIGKILL)
            self._process.wait()

    @property
    def output(self) -> str:
        return "".join(text for _, text in self.chunks)

    def migrating(self) -> float:
        """Seconds from "Running migrations:" to the last migration's "OK" (0 if none ran)."""
        begin = next((at for at, text in self.chunks if "Running migrations:" in text), None)
        end = next((at for at, text in reversed(self.chunks) if " OK" in text), None)
        return 0.0 if begin is None or end is None else end - begin


def migration_at(output: str) -> str:
    """What the output says was going on at its end: ``in app.0001_x``, ``after
    app.0001_x`` or ``before migrations``."""
    found = list(_MIGRATION.finditer(output))
    if not found:
        return "before migrations"
    last = found[-1]
    return f"{'after' if last.group(3) else 'in'} {last.group(2)}"


def last_error_line(output: str) -> str:
    """The last line that reads like an error (else the last non-empty line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.match(r"(\w+\.)*\w*(Error|Exception|Interrupt|Exit)\b", line):
            return line[:300]
    return lines[-1][:300] if lines else "(no output)"
