import django.db.models.deletion
from django.db import migrations, models


def auto_id() -> models.AutoField:
    return models.AutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = [("shop", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="Customer",
            fields=[
                ("id", auto_id()),
                ("name", models.CharField(max_length=100)),
                ("email", models.TextField()),
                ("tier", models.IntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", auto_id()),
                (
                    "customer",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="notes",
                        to="crm.customer",
                    ),
                ),
                ("body", models.TextField()),
            ],
        ),
    ]
