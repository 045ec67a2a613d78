from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Wide",
            [("id", models.AutoField(primary_key=True))]
            + [(f"f{number}", models.CharField(max_length=10)) for number in range(20)],
        )
    ]
