from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        AddIndexConcurrently("Alpha", models.Index(fields=["name"], name="alpha_name_idx")),
    ]
