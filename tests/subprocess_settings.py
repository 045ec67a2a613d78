"""Settings for tests that run ``manage.py`` in a child process (see ``tests/test_cli.py``)."""

import json
import os

from settings import *  # noqa: F403
from settings import DATABASES

DATABASES["default"]["NAME"] = os.environ["PGMIGRATE_TEST_DB_NAME"]
MIGRATION_MODULES = {
    "tests": "tests.scenarios." + os.environ.get("PGMIGRATE_TEST_SCENARIO", "basic")
}
if "PGMIGRATE_TEST_ACTION" in os.environ:
    PGMIGRATE_BLOCKING_ACTION = os.environ["PGMIGRATE_TEST_ACTION"] or None
if os.environ.get("PGMIGRATE_TEST_PATCH") == "off":
    PGMIGRATE_PATCH_MIGRATE = False
if "PGMIGRATE_TEST_DATABASE" in os.environ:  # JSON: keys of DATABASES["default"] to change
    DATABASES["default"].update(json.loads(os.environ["PGMIGRATE_TEST_DATABASE"]))
if "PGMIGRATE_TEST_SETTINGS" in os.environ:  # JSON (NaN, Infinity allowed): settings to set
    globals().update(json.loads(os.environ["PGMIGRATE_TEST_SETTINGS"]))
