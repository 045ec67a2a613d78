from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Code",
            [
                ("id", models.AutoField(primary_key=True)),
                ("code", models.CharField(max_length=10, db_index=True)),
            ],
        ),
    ]
