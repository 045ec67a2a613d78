from django.db import migrations

from tests.scenarios import search_path_check


class Migration(migrations.Migration):
    """An atomic migration of irreversible operations (which share one transaction) whose
    second commits by itself; its third fails on demand (``SEARCH_PATH["fail"]``)."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("ALTER TABLE tests_alpha ADD COLUMN a integer"),
        migrations.RunSQL("ALTER TABLE tests_alpha ADD COLUMN b integer; COMMIT"),
        migrations.RunPython(search_path_check),
    ]
