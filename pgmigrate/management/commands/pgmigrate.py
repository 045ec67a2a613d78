"""``manage.py pgmigrate``: pgmigrate's ``migrate``, whether or not ``migrate`` is patched."""

from pgmigrate.command import MigrateCommand


class Command(MigrateCommand):
    pass
