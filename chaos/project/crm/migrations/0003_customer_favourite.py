import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F


def pick_favourites(apps, schema_editor):
    """Every customer gets a favourite product (one UPDATE of 12,000 rows)."""
    Customer = apps.get_model("crm", "Customer")
    Customer.objects.update(favourite_product_id=F("id") % 8000 + 1)


class Migration(migrations.Migration):
    dependencies = [("crm", "0002_seed"), ("shop", "0003_product_changes")]
    operations = [
        migrations.AddField(
            model_name="customer",
            name="favourite_product",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="fans",
                to="shop.product",
            ),
        ),
        migrations.RunPython(pick_favourites, migrations.RunPython.noop),
        # text -> varchar(254)
        migrations.AlterField(
            model_name="customer", name="email", field=models.CharField(max_length=254)
        ),
    ]
