from django.contrib.postgres.operations import RemoveIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    """Gamma's name back to text (integer to text rewrites, whatever the catalog shows now),
    the indexes 0003 makes dropped."""

    atomic = False
    dependencies = [("tests", "0003_first")]
    operations = [
        migrations.AlterField("Gamma", "name", models.TextField(default="")),
        migrations.RemoveIndex("Gamma", "gamma_name_idx"),
        RemoveIndexConcurrently("Alpha", "alpha_id_idx"),
    ]
