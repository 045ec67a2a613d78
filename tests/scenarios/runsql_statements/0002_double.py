from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddField("Beta", "flag", models.BooleanField(null=True)),
        migrations.RunSQL(
            [
                "UPDATE tests_alpha SET name = name || '+'",
                "ALTER TABLE tests_alpha ADD CONSTRAINT not_bad CHECK (name NOT LIKE 'bad%')",
                ("INSERT INTO tests_gamma (name) VALUES (%s)", ["inserted once"]),
            ],
            [
                "DELETE FROM tests_gamma WHERE name = 'inserted once'",
                "ALTER TABLE tests_alpha DROP CONSTRAINT not_bad",
                "UPDATE tests_alpha SET name = left(name, -1)",
            ],
        ),
    ]
