from django.db import migrations


class Migration(migrations.Migration):
    """A ``SET LOCAL`` lasts as long as its transaction: pgmigrate runs each operation in
    one of its own (with ``PGMIGRATE_ATOMIC``, the migration in one), and the session's
    ``search_path`` from 0002 is back for the next."""

    dependencies = [("tests", "0002_path")]
    operations = [
        migrations.RunSQL("SET LOCAL search_path = public", migrations.RunSQL.noop),
        migrations.RunSQL("COMMENT ON TABLE tests_alpha IS 'commented'", migrations.RunSQL.noop),
    ]
