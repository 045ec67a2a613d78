import django.db.models.deletion
from django.db import migrations, models


def auto_id() -> models.AutoField:
    return models.AutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = [("shop", "0003_product_changes"), ("crm", "0002_seed")]
    operations = [
        migrations.CreateModel(
            name="Event",
            fields=[
                ("id", auto_id()),
                ("kind", models.CharField(max_length=20)),
                (
                    "product",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="shop.product",
                    ),
                ),
                (
                    "customer",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="crm.customer",
                    ),
                ),
                ("payload", models.JSONField(default=dict)),
            ],
        ),
        migrations.CreateModel(
            name="Snapshot",
            fields=[
                ("id", auto_id()),
                ("label", models.CharField(max_length=50)),
                ("size", models.IntegerField(default=0)),
            ],
        ),
    ]
