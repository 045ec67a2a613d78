"""Blocking actions used by the tests (importable by dotted path)."""

import threading
from typing import ClassVar

import pgmigrate
from pgmigrate.actions import blockers


class Recording(pgmigrate.BlockingAction):
    """Terminates blockers through pglock and records what it saw."""

    calls: ClassVar[list] = []
    ends_blockers = True  # the pids it returns are ended: no stepping aside for them

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


class Paging(pgmigrate.BlockingAction):
    """Only tells (the README's PageOnCall): reads the blockers from ``blocked_locks`` through
    django-pglock, records them, ends nobody (``ends_blockers`` stays False)."""

    calls: ClassVar[list] = []

    def worker(self, cmd, blocked_locks):
        pids = sorted(set(blocked_locks.values_list("blocking_activity_id", flat=True)))
        type(self).calls.append(pids)
        cmd.notice(f"paging on-call about {pids}", warning=True)
        return pids


class ClaimsToEnd(pgmigrate.BlockingAction):
    """Says it ends the blockers (``ends_blockers = True``) and returns their pids, but does
    not end them: pgmigrate takes its word for it."""

    ends_blockers = True
    calls: ClassVar[list] = []

    def worker(self, cmd, blocked_locks):
        pids = sorted(blocker.pid for blocker in blockers(blocked_locks))
        type(self).calls.append(pids)
        cmd.notice(f"claims to have ended {pids}")
        return pids


class Raising(pgmigrate.BlockingAction):
    """A custom action with a bug: it says it ends sessions, then raises."""

    ends_blockers = True

    def worker(self, cmd, blocked_locks):
        raise RuntimeError("the action's own bug")
