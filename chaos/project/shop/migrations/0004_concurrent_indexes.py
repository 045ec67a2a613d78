from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("shop", "0003_product_changes")]
    operations = [
        AddIndexConcurrently(
            model_name="product",
            index=models.Index(fields=["sku"], name="shop_product_sku_idx"),
        ),
        migrations.RunSQL(
            "CREATE INDEX CONCURRENTLY shop_order_note_lower_idx ON shop_order (lower(note))",
            reverse_sql="DROP INDEX CONCURRENTLY IF EXISTS shop_order_note_lower_idx",
        ),
    ]
