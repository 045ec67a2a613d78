"""Plain Django ``migrate``: no pgmigrate apps."""

from realmig.settings_common import *  # noqa: F403
