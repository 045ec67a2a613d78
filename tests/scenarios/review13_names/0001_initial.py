from django.db import migrations, models

from tests.scenarios import InitialMigration


class Migration(migrations.Migration):
    initial = True
    operations = [
        *InitialMigration.operations,
        migrations.CreateModel(
            "Outside",
            [("id", models.AutoField(primary_key=True)), ("name", models.TextField())],
            options={"db_table": '"review13"."Outside Mixed"'},
        ),
    ]
