import uuid

from django.db import migrations, models
from django.utils import timezone


class Migration(migrations.Migration):
    """Arguments computed when the file is imported, so another value in every process (as
    hand-written migrations often do): a default, choices made from a set (their order
    follows PYTHONHASHSEED), RunSQL parameters. Operation 5 waits while tests_beta is held."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField(
            "Alpha",
            "created",
            models.DateTimeField(default=timezone.now()),
            preserve_default=False,
        ),
        migrations.AddField("Alpha", "token", models.UUIDField(default=uuid.uuid4())),
        migrations.AddField(
            "Alpha",
            "size",
            models.CharField(
                max_length=5, default="s", choices=[(size, size) for size in {"s", "m", "l"}]
            ),
        ),
        migrations.RunSQL(
            [("UPDATE tests_alpha SET name = %s", [timezone.now().isoformat()])],
            migrations.RunSQL.noop,
        ),
        migrations.RunSQL(
            "LOCK TABLE tests_beta IN ACCESS EXCLUSIVE MODE", migrations.RunSQL.noop
        ),
    ]
