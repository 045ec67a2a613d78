"""An app that overrides ``migrate`` itself (for the pgmigrate.W001 check test)."""

from django.core.management.commands.migrate import Command as BaseCommand


class Command(BaseCommand):
    pass
