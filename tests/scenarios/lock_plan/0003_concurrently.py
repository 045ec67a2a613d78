from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """An index built without blocking writes: no pgmigrate.L003."""

    atomic = False
    dependencies = [("tests", "0002_plan")]
    operations = [
        AddIndexConcurrently("Alpha", models.Index(fields=["name"], name="alpha_name_idx")),
    ]
