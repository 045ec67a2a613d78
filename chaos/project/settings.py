"""Settings of the chaos project.

The database is ``$DATABASE_URL`` (set by ``python -m chaos`` for each trial).
``$CHAOS_SETTINGS`` is a JSON object of extra settings, e.g. ``{"PGMIGRATE_LOCK_TIMEOUT":
0.2}``; ``$CHAOS_PG_OPTIONS`` goes to libpq's ``options`` (e.g. ``-c lock_timeout=200``),
which is how plain Django runs (``PGMIGRATE_PATCH_MIGRATE = False``) get a timeout.
"""

import json
import os

import dj_database_url

#: application_name of the migrating connection (the watcher names its own "pgmigrate ...").
APPLICATION_NAME = "chaos-migrate"

SECRET_KEY = "django-pgmigrate-chaos-insecure-dummy-key"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.postgres",
    "pgactivity",
    "pglock",
    "pgmigrate",
    "chaos.project.shop",
    "chaos.project.crm",
    "chaos.project.audit",
]
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DATABASES["default"]["OPTIONS"] = {"application_name": APPLICATION_NAME}
if os.environ.get("CHAOS_PG_OPTIONS"):
    DATABASES["default"]["OPTIONS"]["options"] = os.environ["CHAOS_PG_OPTIONS"]

globals().update(json.loads(os.environ.get("CHAOS_SETTINGS") or "{}"))
