from django.db import migrations


class Migration(migrations.Migration):
    """One of two leaves: a conflict ``makemigrations --merge`` would resolve."""

    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunSQL("SELECT 1", migrations.RunSQL.noop)]
