"""Settings of the demo: its own database on the server of ``$DATABASE_URL``, or on a
throwaway PostgreSQL when it is unset (tests/pgserver.py). ``python -m demo`` creates the
database before using it and drops it at the end."""

import urllib.parse

import dj_database_url

from tests import pgserver

#: The demo's database, created and dropped by ``python -m demo``.
DEMO_DATABASE = "pgmigrate_demo"

_url = urllib.parse.urlsplit(pgserver.database_url())
_server = dj_database_url.parse(_url.geturl())
#: The demo's database as a libpq URL, for its app process (demo/app.py).
DEMO_DATABASE_URL = _url._replace(path=f"/{DEMO_DATABASE}").geturl()

SECRET_KEY = "django-pgmigrate-demo-insecure-dummy-key"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["pgactivity", "pglock", "pgmigrate", "demo"]
DATABASES = {
    "default": {**_server, "NAME": DEMO_DATABASE},
    # The database of the URL: only to create and drop the demo's own.
    "server": _server,
}
