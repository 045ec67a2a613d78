from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_price")]
    operations = [
        # 1.25 becomes 1: undoing it gives 1.0, not 1.25.
        migrations.AlterField("Alpha", "price", models.IntegerField(null=True)),
        # Fails (division by zero) until tests_gamma has a row named 'ready'.
        migrations.RunSQL(
            "SELECT 1 / (SELECT count(*) FROM tests_gamma WHERE name = 'ready')",
            migrations.RunSQL.noop,
        ),
    ]
