from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Book",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alpha", models.ForeignKey("tests.Alpha", models.CASCADE)),
            ],
        ),
        # A legacy row whose alpha does not exist: the deferred foreign key fails.
        migrations.RunSQL("INSERT INTO tests_book (alpha_id) VALUES (999)"),
    ]
