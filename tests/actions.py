"""Blocking actions used by the tests (importable by dotted path)."""

import threading
from typing import ClassVar

import pgmigrate


class Recording(pgmigrate.BlockingAction):
    """Terminates blockers through pglock and records what it saw."""

    calls: ClassVar[list] = []

    def worker(self, cmd, blocked_locks):
        pids = sorted(set(blocked_locks.values_list("blocking_activity_id", flat=True)))
        type(self).calls.append({"pids": pids, "command": cmd})
        blocked_locks.terminate_blocking_activity()
        cmd.notice(f"recording action ended {pids}")
        return pids


class Gated(pgmigrate.Terminate):
    """Terminate, but only once the test opens the gate."""

    gate = threading.Event()

    def worker(self, cmd, blocked_locks):
        type(self).gate.wait(30)
        return super().worker(cmd, blocked_locks)


class GatedAtTheDoor(pgmigrate.Terminate):
    """Terminate, but only once the test opens the gate; ``entered`` tells it is waiting."""

    entered = threading.Event()
    gate = threading.Event()

    def worker(self, cmd, blocked_locks):
        type(self).entered.set()
        type(self).gate.wait(30)
        return super().worker(cmd, blocked_locks)
