from django.db import migrations


class Migration(migrations.Migration):
    """Waits for a transaction-level advisory lock, which a session-level one held by an
    idle session (not in a transaction) blocks."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("SELECT pg_advisory_xact_lock(4242)", migrations.RunSQL.noop),
    ]
