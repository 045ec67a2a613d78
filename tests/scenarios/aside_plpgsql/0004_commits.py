from django.db import connection, migrations

#: A batch committed inside the block, then an ALTER that may wait on a lock: run again, the
#: batch would be applied twice.
COMMITS = """
DO $$
BEGIN
    INSERT INTO tests_alpha (name) VALUES ('{name}');
    COMMIT;
    ALTER TABLE tests_beta ADD COLUMN {column} boolean;
END $$
"""


def commit_in_autocommit(apps, schema_editor):
    with connection.cursor() as cursor:
        cursor.execute(COMMITS.format(name="python batch", column="from_python"))


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0003_trapped_outside")]
    operations = [
        migrations.RunPython(commit_in_autocommit, migrations.RunPython.noop),
        migrations.RunSQL(
            COMMITS.format(name="sql batch", column="from_sql"), migrations.RunSQL.noop
        ),
    ]
