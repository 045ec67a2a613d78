"""Settings shared by the three modes. The orchestrator passes, in the environment:
``REALMIG_DATABASE_URL`` (the mode's own database) and ``REALMIG_APPS`` (comma-separated
group names of ``realmig.apps``)."""

from __future__ import annotations

import os
import urllib.parse

from realmig.apps import installed_apps


def _database(url: str) -> dict[str, object]:
    """Django's DATABASES entry for a ``postgres://`` URL (the host may be a quoted socket
    directory, as ``tests/pgserver.py`` makes; query parameters become OPTIONS)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    host, port = hostport, ""
    if hostport.startswith("["):  # [IPv6]:port
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": urllib.parse.unquote(parts.path.lstrip("/")),
        "USER": urllib.parse.unquote(user),
        "PASSWORD": urllib.parse.unquote(password),
        "HOST": urllib.parse.unquote(host),
        "PORT": port,
        "OPTIONS": dict(urllib.parse.parse_qsl(parts.query)),
    }


SECRET_KEY = "realmig-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
SITE_ID = 1
ROOT_URLCONF = "realmig.urls"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": _database(os.environ["REALMIG_DATABASE_URL"])}

GROUPS = [name for name in os.environ.get("REALMIG_APPS", "").split(",") if name]
INSTALLED_APPS = installed_apps(GROUPS)

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
if "allauth" in GROUPS:
    MIDDLEWARE.append("allauth.account.middleware.AccountMiddleware")

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Wagtail
WAGTAIL_SITE_NAME = "realmig"
WAGTAILADMIN_BASE_URL = "http://localhost"

# dj-stripe: test mode, placeholder keys (migrations never call Stripe).
STRIPE_LIVE_MODE = False
STRIPE_TEST_SECRET_KEY = "sk_test_realmig"
DJSTRIPE_WEBHOOK_SECRET = "whsec_realmig"
DJSTRIPE_FOREIGN_KEY_TO_FIELD = "id"
