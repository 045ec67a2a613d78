from django.db import migrations

#: Operation 2's transaction: an ALTER that may wait on a lock, a row, and a statement that,
#: when the session sets ``tests.race``, runs long the first time only (a sequence is not
#: rolled back), so that a cancel sent after the ALTER got its lock lands inside the
#: transaction.
RACED = [
    "ALTER TABLE tests_beta ADD COLUMN raced boolean",
    "INSERT INTO tests_alpha (name) VALUES ('once')",
    "SELECT CASE WHEN nextval('tests_race_seq') = 1"
    " AND current_setting('tests.race', true) = 'on' THEN pg_sleep(60) END",
]


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("CREATE SEQUENCE tests_race_seq", "DROP SEQUENCE tests_race_seq"),
        migrations.RunSQL(RACED, migrations.RunSQL.noop),
    ]
