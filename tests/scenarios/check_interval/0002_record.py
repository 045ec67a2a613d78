from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        # What the migrating connection's setting is while a migration runs.
        migrations.RunSQL(
            "INSERT INTO tests_gamma (name)"
            " SELECT current_setting('client_connection_check_interval')",
            migrations.RunSQL.noop,
        ),
    ]
