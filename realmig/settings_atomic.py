"""``migrate`` by pgmigrate with ``PGMIGRATE_ATOMIC``: one transaction per migration."""

from realmig.settings_pgmigrate import *  # noqa: F403

PGMIGRATE_ATOMIC = True
