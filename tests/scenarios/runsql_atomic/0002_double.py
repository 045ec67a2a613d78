from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "UPDATE tests_alpha SET name = name || '+'",
                "ALTER TABLE tests_alpha ADD CONSTRAINT not_bad CHECK (name NOT LIKE 'bad%')",
            ],
            migrations.RunSQL.noop,
        )
    ]
