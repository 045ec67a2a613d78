import contextlib

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class PGMigrateConfig(AppConfig):
    name = "pgmigrate"
    verbose_name = "pgmigrate"

    def ready(self) -> None:
        from pgmigrate import checks, patching

        checks.register()
        with contextlib.suppress(ImproperlyConfigured):  # reported as pgmigrate.E006
            patching.apply_setting()
