from django.db import connection, migrations


def sleep(apps, schema_editor):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(0.4)")


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [migrations.RunPython(sleep, migrations.RunPython.noop)]
