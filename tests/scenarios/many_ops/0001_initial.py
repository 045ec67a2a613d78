from django.db import migrations, models

FIELDS = 30


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Big",
            [("id", models.AutoField(primary_key=True))]
            + [(f"f{number}", models.IntegerField(null=True)) for number in range(FIELDS)],
        )
    ]
