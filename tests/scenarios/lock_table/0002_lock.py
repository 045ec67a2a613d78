from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        # Both need the operation's statements in one transaction, as in Django.
        migrations.RunSQL(
            [
                "LOCK TABLE tests_alpha IN SHARE ROW EXCLUSIVE MODE",
                "UPDATE tests_alpha SET name = upper(name)",
            ]
        ),
        migrations.RunSQL(
            [
                "CREATE TEMP TABLE renames ON COMMIT DROP AS"
                " SELECT id, name || '!' AS name FROM tests_alpha",
                "UPDATE tests_alpha a SET name = r.name FROM renames r WHERE r.id = a.id",
            ]
        ),
    ]
