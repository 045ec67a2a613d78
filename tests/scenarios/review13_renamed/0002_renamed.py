from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RenameModel("Alpha", "Omega"),
        migrations.AddIndex("Omega", models.Index(fields=["name"], name="omega_name_idx")),
    ]
