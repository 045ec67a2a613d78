import time

from django.db import connection, migrations, models


def slow_to_send(apps, schema_editor):
    """A statement the client takes long to send (as psycopg merging a huge parameter
    list): pgmigrate marks it running while its backend is still idle in the transaction."""

    def wait_before_sending(execute, sql, params, many, context):
        time.sleep(0.5)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wait_before_sending), connection.cursor() as cursor:
        cursor.execute("INSERT INTO tests_alpha (name) VALUES ('slow')")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunPython(slow_to_send, migrations.RunPython.noop),
        migrations.AddField("Beta", "later", models.BooleanField(null=True)),
    ]
