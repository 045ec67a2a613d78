"""Known differences: tests of Django's suite allowed to fail with pgmigrate, with why.

A regression (a test that passes without pgmigrate and fails with it) listed here is
reported but does not fail the run; one not listed does. An entry that no longer matches any
regression is reported as stale. Add one only with the reason it cannot or should not pass::

    Expected(
        "migrations.test_commands.MigrateTests.test_migrate_plan",  # fnmatch pattern
        "pgmigrate prints its backend pid line before the plan",
        modes=("default", "atomic"),  # optional: all pgmigrate modes
        django=("5.2",),  # optional: all Django versions
    ),
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Expected:
    #: A test id (``app.module.Class.test``) or an fnmatch pattern of ids.
    test: str
    reason: str
    modes: tuple[str, ...] = ()
    django: tuple[str, ...] = ()

    def matches(self, test: str, mode: str, series: str) -> bool:
        return (
            fnmatchcase(test, self.test)
            and (not self.modes or mode in self.modes)
            and (not self.django or series in self.django)
        )


EXPECTED: list[Expected] = []
