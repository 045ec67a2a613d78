from django.db import migrations
from django.utils import timezone


class Migration(migrations.Migration):
    """A statement list run statement by statement whose parameters are computed when the
    file is imported: another value in every process. Statement 2 waits while tests_beta is
    held."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                ("INSERT INTO tests_alpha (name) VALUES (%s)", [timezone.now().isoformat()]),
                "LOCK TABLE tests_beta IN ACCESS EXCLUSIVE MODE",
                "INSERT INTO tests_gamma (name) VALUES ('statement 3')",
            ],
            migrations.RunSQL.noop,
        )
    ]
