"""50 categories, 8,000 products, 32,000 orders (four statements), explicit ids throughout,
so that a rolled-back attempt does not shift the ids a later attempt gets."""

from django.db import migrations

PRODUCTS = 8_000
ORDERS = 32_000
ORDER_BATCHES = 4


def insert_orders(first: int, last: int) -> str:
    # Quantities -1 to 5: migration 0005 fixes those below 1 before adding a CHECK.
    return (
        "INSERT INTO shop_order (id, product_id, quantity, note, day)"
        f" SELECT g, 1 + g % {PRODUCTS}, g % 7 - 1, 'order ' || g,"
        " date '2024-01-01' + g % 365"
        f" FROM generate_series({first}, {last}) AS g"
    )


BATCH = ORDERS // ORDER_BATCHES


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "INSERT INTO shop_category (id, name)"
                " SELECT g, 'category ' || g FROM generate_series(1, 50) AS g",
                "INSERT INTO shop_product (id, category_id, sku, name, price, stock)"
                " SELECT g, 1 + g % 50, 'SKU-' || lpad(g::text, 6, '0'), 'product ' || g,"
                " (g % 1000) / 10.0, g % 100"
                f" FROM generate_series(1, {PRODUCTS}) AS g",
                *(insert_orders(start + 1, start + BATCH) for start in range(0, ORDERS, BATCH)),
            ],
            reverse_sql=[
                "DELETE FROM shop_order",
                "DELETE FROM shop_product",
                "DELETE FROM shop_category",
            ],
        ),
    ]
