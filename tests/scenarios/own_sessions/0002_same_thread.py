"""The migration's own code holds a lock on tests_alpha through a second session (a
connection to the same database opened by this thread), then alters the table: a deadlock
in the client."""

from django.db import connections, migrations

from tests.scenarios import OWN_SESSIONS as SEEN


def read_then_alter(apps, schema_editor):
    other = connections.create_connection(schema_editor.connection.alias)
    try:
        other.ensure_connection()
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM tests_alpha")
            cursor.execute("SELECT pg_backend_pid()")
            SEEN["pid"] = cursor.fetchone()[0]
        schema_editor.execute("ALTER TABLE tests_alpha ADD COLUMN own integer")
    finally:
        try:
            other.rollback()  # fails if pgmigrate ended the session
            SEEN["rolled_back"] = True
        finally:
            other.close()


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunPython(read_then_alter, migrations.RunPython.noop)]
