"""Django settings for development, the test suite and the demo.

PostgreSQL comes from ``$DATABASE_URL``, or a throwaway server is started (tests/pgserver.py).
"""

import copy
import os
import tempfile

import dj_database_url

from tests import pgserver

SECRET_KEY = "django-pgmigrate-insecure-dummy-key"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["pgactivity", "pglock", "pgmigrate", "tests"]

_url = pgserver.database_url()
_default = dj_database_url.parse(_url)
_other = copy.deepcopy(_default) | {"NAME": f"{_default['NAME']}_other"}
pgserver.ensure_database(_url, _other["NAME"])  # so `migrate --database other` works
DATABASES = {
    "default": _default,
    "other": _other,
    # A role without superuser rights, created by the test suite (tests/test_privileges.py).
    "migrator": {**copy.deepcopy(_default), "USER": "pgm_migrator", "TEST": {"MIRROR": "default"}},
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), "django-pgmigrate.sqlite3"),
    },
}

if "PGMIGRATE_LOCK_TIMEOUT" in os.environ:
    PGMIGRATE_LOCK_TIMEOUT = float(os.environ["PGMIGRATE_LOCK_TIMEOUT"])
