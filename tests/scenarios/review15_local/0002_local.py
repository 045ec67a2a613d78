from django.db import migrations


class Migration(migrations.Migration):
    """A ``SET LOCAL`` in a migration with ``atomic = False``: Django runs each statement
    outside a transaction, where it only warns and changes nothing."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "SET LOCAL search_path = pg_catalog",
                "COMMENT ON TABLE tests_alpha IS 'commented'",
            ],
            migrations.RunSQL.noop,
        ),
    ]
