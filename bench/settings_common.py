"""Django settings shared by both implementations the benchmark runs ``migrate`` with.

The database comes from ``$DATABASE_URL`` (set by ``python -m bench`` for its children).
``$BENCH_EXTRA_APPS`` adds apps (e.g. the generated app of the "overhead" scenario, found
through ``$PYTHONPATH``); ``$BENCH_DB_ROLE`` makes the connections run as that role.
"""

import os

import dj_database_url

SECRET_KEY = "django-pgmigrate-bench-insecure-dummy-key"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"])}
DATABASES["default"]["OPTIONS"] = {"application_name": "bench migrate"}
if os.environ.get("BENCH_DB_ROLE"):  # "watcher cost" tells its statements apart by role
    DATABASES["default"]["OPTIONS"]["options"] = f"-c role={os.environ['BENCH_DB_ROLE']}"
BENCH_APPS = ["bench.benchapp", *filter(None, os.environ.get("BENCH_EXTRA_APPS", "").split(","))]
