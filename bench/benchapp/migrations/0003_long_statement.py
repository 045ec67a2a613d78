"""A migration with one long statement (2 s), so that the watcher has something to watch."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("benchapp", "0002_row_note")]
    operations = [migrations.RunSQL("SELECT pg_sleep(2)", migrations.RunSQL.noop)]
