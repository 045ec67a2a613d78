"""``migrate`` by pgmigrate, with its default settings (one transaction per operation)."""

from realmig.apps import PGMIGRATE_APPS
from realmig.settings_common import *  # noqa: F403
from realmig.settings_common import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, *PGMIGRATE_APPS]
