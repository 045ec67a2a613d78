from django.db import connection, migrations


def add_row_then_lock_beta(apps, schema_editor):
    apps.get_model("tests", "Alpha").objects.create(name="once")
    with connection.cursor() as cursor:
        cursor.execute("LOCK TABLE tests_beta IN ACCESS EXCLUSIVE MODE")


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_slow_sql")]
    operations = [migrations.RunPython(add_row_then_lock_beta, migrations.RunPython.noop)]
