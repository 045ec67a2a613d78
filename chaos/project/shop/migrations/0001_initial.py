import django.db.models.deletion
from django.db import migrations, models


def auto_id() -> models.AutoField:
    return models.AutoField(
        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Category",
            fields=[("id", auto_id()), ("name", models.CharField(max_length=100, unique=True))],
        ),
        migrations.CreateModel(
            name="Product",
            fields=[
                ("id", auto_id()),
                (
                    "category",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="products",
                        to="shop.category",
                    ),
                ),
                ("sku", models.CharField(max_length=32)),
                ("name", models.TextField()),
                ("price", models.DecimalField(decimal_places=2, max_digits=10)),
                ("stock", models.IntegerField(default=0)),
            ],
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                ("id", auto_id()),
                (
                    "product",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="orders",
                        to="shop.product",
                    ),
                ),
                ("quantity", models.IntegerField()),
                ("note", models.TextField(default="")),
                ("day", models.DateField()),
            ],
        ),
    ]
