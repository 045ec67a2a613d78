from django.db import migrations, models


class Migration(migrations.Migration):
    """Two operations whose undoing loses nothing (backwards: RemoveIndex)."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.AddIndex("Alpha", models.Index(fields=["name"], name="alpha_name_idx")),
        migrations.AddIndex("Beta", models.Index(fields=["name"], name="beta_name_idx")),
    ]
