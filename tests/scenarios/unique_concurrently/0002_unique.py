from django.db import migrations


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        # Fails on duplicate names, leaving an INVALID index.
        migrations.RunSQL(
            "CREATE UNIQUE INDEX CONCURRENTLY alpha_name_uniq ON tests_alpha (name)",
            "DROP INDEX CONCURRENTLY IF EXISTS alpha_name_uniq",
        ),
    ]
