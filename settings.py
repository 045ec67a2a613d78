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
_other_name = f"{_default['NAME']}_other"
_other = copy.deepcopy(_default) | {"NAME": _other_name}
# So `migrate --database other` works. The test suite drops what it created (conftest.py).
TESTS_CREATED_DATABASES = [_other_name] if pgserver.ensure_database(_url, _other_name) else []
DATABASES = {
    "default": _default,
    "other": _other,
    # A role without superuser rights, created by the test suite (tests/test_privileges.py).
    "migrator": {**copy.deepcopy(_default), "USER": "pgm_migrator", "TEST": {"MIRROR": "default"}},
    # The test database through a PgBouncer that tests/test_pgbouncer.py starts (it sets HOST
    # and PORT while one runs; otherwise this is a direct connection like "default").
    "pgbouncer": {**copy.deepcopy(_default), "TEST": {"MIRROR": "default"}},
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), "django-pgmigrate.sqlite3"),
    },
}

if "PGMIGRATE_LOCK_TIMEOUT" in os.environ:
    PGMIGRATE_LOCK_TIMEOUT = float(os.environ["PGMIGRATE_LOCK_TIMEOUT"])
