"""pgmigrate: Django migrations that end the sessions blocking them on PostgreSQL."""

from typing import TYPE_CHECKING

from pgmigrate.actions import Blocker, BlockingAction, Cancel, Show, Terminate
from pgmigrate.errors import MigrateError, PartialMigrationError
from pgmigrate.version import __version__

if TYPE_CHECKING:
    from pgmigrate.command import MigrateCommand

__all__ = [
    "Blocker",
    "BlockingAction",
    "Cancel",
    "MigrateCommand",
    "MigrateError",
    "PartialMigrationError",
    "Show",
    "Terminate",
    "__version__",
]


def __getattr__(name: str) -> object:
    # The command imports Django's migrate machinery; load it only when asked for.
    if name == "MigrateCommand":
        from pgmigrate.command import MigrateCommand

        return MigrateCommand
    raise AttributeError(f"module 'pgmigrate' has no attribute {name!r}")
