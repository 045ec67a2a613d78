"""Settings for Django's tests/runtests.py on PostgreSQL (``--settings=django_suite.settings``).

Like the sdist's test_sqlite.py, with ``default`` and ``other`` on the server of
``$DATABASE_URL`` (databases named after the Django version and the mode, so runs of
different versions can share a server). ``$DJANGO_SUITE_MODE``: ``plain``, ``default`` or
``atomic``; runtests.py sets ``INSTALLED_APPS`` itself (see django_suite/child.py).
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

import django

MODE = os.environ.get("DJANGO_SUITE_MODE", "plain")


def database(url: str, name: str) -> dict[str, Any]:
    """A PostgreSQL ``DATABASES`` entry for the server of ``url`` (host may be a socket
    directory, percent-encoded), database ``name``."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if ":" in hostport and not hostport.endswith("]"):
        host, _, port = hostport.rpartition(":")
    else:  # no port, or a bare IPv6 address
        host, port = hostport, ""
    options = dict(urllib.parse.parse_qsl(parts.query))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": urllib.parse.unquote(user),
        "PASSWORD": urllib.parse.unquote(password),
        "HOST": urllib.parse.unquote(host).strip("[]"),
        "PORT": port,
        "OPTIONS": options,
    }


_prefix = "django_suite_{}{}_{}".format(*django.VERSION[:2], MODE)
DATABASES = {
    "default": database(os.environ["DATABASE_URL"], _prefix),
    "other": database(os.environ["DATABASE_URL"], f"{_prefix}_other"),
}

SECRET_KEY = "django_tests_secret_key"
# A fast hasher, as in the sdist's test_sqlite.py.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if int(django.VERSION[0]) < 6:  # 6.0 dropped it from test_sqlite.py
    DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False

TEST_RUNNER = "django_suite.runner.SuiteRunner"

if MODE == "atomic":
    PGMIGRATE_ATOMIC = True
