from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    dependencies = [("shop", "0004_concurrent_indexes")]
    operations = [
        migrations.AddConstraint(
            model_name="product",
            constraint=models.CheckConstraint(
                condition=Q(price__gte=0), name="shop_product_price_gte_0"
            ),
        ),
        migrations.AddConstraint(
            model_name="product",
            constraint=models.UniqueConstraint(
                fields=["category", "sku"], name="shop_product_cat_sku_uniq"
            ),
        ),
        # Fix the data, then constrain it (the UPDATE is not undone backwards).
        migrations.RunSQL(
            [
                "UPDATE shop_order SET quantity = 1 WHERE quantity < 1",
                "ALTER TABLE shop_order ADD CONSTRAINT shop_order_quantity_positive"
                " CHECK (quantity > 0)",
            ],
            reverse_sql=[
                "ALTER TABLE shop_order DROP CONSTRAINT shop_order_quantity_positive",
            ],
        ),
    ]
