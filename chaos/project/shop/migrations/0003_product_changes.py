from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0002_seed")]
    operations = [
        # integer -> bigint: a rewrite of the 32,000 orders.
        migrations.AlterField(model_name="order", name="quantity", field=models.BigIntegerField()),
        migrations.AddField(
            model_name="product", name="weight_grams", field=models.IntegerField(default=0)
        ),
        migrations.RenameField(model_name="product", old_name="name", new_name="title"),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(fields=["product", "day"], name="shop_order_product_day_idx"),
        ),
    ]
