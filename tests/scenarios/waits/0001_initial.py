from django.db import migrations, models


def _table(name):
    return migrations.CreateModel(
        name, [("id", models.AutoField(primary_key=True)), ("name", models.TextField(default=""))]
    )


class Migration(migrations.Migration):
    initial = True
    operations = [_table("Alpha"), _table("Beta"), _table("Gamma")]
