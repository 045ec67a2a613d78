from django.db import migrations


class Migration(migrations.Migration):
    """As ``row_update``, after taking a SHARE lock on tests_beta in the same transaction:
    while the row's update waits, the app's writes to tests_beta queue behind it."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "LOCK TABLE tests_beta IN SHARE MODE;"
            " UPDATE tests_gamma SET name = 'migrated' WHERE id = 1",
            migrations.RunSQL.noop,
        ),
    ]
