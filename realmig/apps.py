"""The apps realmig migrates, in groups that ``--apps`` selects by name.

Pure data (no Django import): the settings modules and the orchestrator both read it.
"""

from __future__ import annotations

#: Always installed: the other groups' models depend on them.
CONTRIB = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.flatpages",
    "django.contrib.redirects",
    "django.contrib.postgres",
]

#: Selectable groups, in the order they go into INSTALLED_APPS (before CONTRIB, so that
#: their templates and static files win, as in a real project).
GROUPS: dict[str, list[str]] = {
    "wagtail": [
        "wagtail.contrib.forms",
        "wagtail.contrib.redirects",
        "wagtail.contrib.search_promotions",
        "wagtail.contrib.settings",
        "wagtail.contrib.simple_translation",
        "wagtail.locales",
        "wagtail.embeds",
        "wagtail.sites",
        "wagtail.users",
        "wagtail.snippets",
        "wagtail.documents",
        "wagtail.images",
        "wagtail.search",
        "wagtail.admin",
        "wagtail",
        "modelcluster",
        "taggit",
    ],
    "allauth": [
        "allauth",
        "allauth.account",
        "allauth.socialaccount",
        "allauth.socialaccount.providers.openid",
        "allauth.mfa",
        "allauth.usersessions",
        "allauth.idp.oidc",
    ],
    "celery-beat": ["django_celery_beat"],
    "reversion": ["reversion"],
    "djstripe": ["djstripe"],
}

#: ``--quick``: small, but with data migrations, squashed migrations and many AlterFields.
QUICK = ["reversion", "celery-beat"]

#: pgmigrate's apps: in the pgmigrate modes only.
PGMIGRATE_APPS = ["pgactivity", "pglock", "pgmigrate"]

#: Name prefixes of pgmigrate's apps' tables: left out of the comparison, reported.
PGMIGRATE_TABLE_PREFIXES = ("pgmigrate_", "pgactivity_", "pglock_")


def installed_apps(groups: list[str]) -> list[str]:
    """INSTALLED_APPS for the selected groups (unknown names raise KeyError)."""
    return [app for name in GROUPS if name in groups for app in GROUPS[name]] + CONTRIB
