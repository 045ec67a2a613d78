from django.db import migrations


class Migration(migrations.Migration):
    """One operation's transaction: ALTER TABLE tests_alpha (ACCESS EXCLUSIVE, held until the
    operation commits), then a wait on tests_beta for SHARE UPDATE EXCLUSIVE, a mode the
    app's reads and writes of tests_beta do not wait for. While it waits, the app queues on
    tests_alpha: the lock the backend already holds."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "ALTER TABLE tests_alpha ADD COLUMN aside integer",
                "LOCK TABLE tests_beta IN SHARE UPDATE EXCLUSIVE MODE",
            ],
            "ALTER TABLE tests_alpha DROP COLUMN aside",
        )
    ]
