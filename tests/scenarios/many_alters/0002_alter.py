from django.db import migrations, models


class Migration(migrations.Migration):
    """Many AlterFields, each in a transaction of its own, that rename nothing: working out
    what later operations rename must not move every later state forward for each one."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        *(
            migrations.AlterField("Wide", f"f{number}", models.CharField(max_length=20))
            for number in range(20)
        ),
    ]
