from django.db import migrations, models

TAGS = 12
TAGGED_PRODUCTS = 600


def tag_products(apps, schema_editor):
    """12 tags; products 1 to 600 get one to three of them (explicit ids)."""
    Tag = apps.get_model("shop", "Tag")
    Tagging = apps.get_model("shop", "Product").tags.through
    Tag.objects.bulk_create(Tag(id=n, name=f"tag {n}") for n in range(1, TAGS + 1))
    rows = []
    for product in range(1, TAGGED_PRODUCTS + 1):
        for offset in range(product % 3 + 1):
            rows.append(
                Tagging(id=len(rows) + 1, product_id=product, tag_id=1 + (product + offset) % TAGS)
            )
    Tagging.objects.bulk_create(rows)


def untag_products(apps, schema_editor):
    # Foreign keys are deferred: without this, dropping the tables fails on pending checks.
    schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    apps.get_model("shop", "Product").tags.through.objects.all().delete()
    apps.get_model("shop", "Tag").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("shop", "0005_constraints")]
    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                (
                    "id",
                    models.AutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=50, unique=True)),
            ],
        ),
        migrations.AddField(
            model_name="product",
            name="tags",
            field=models.ManyToManyField(related_name="products", to="shop.tag"),
        ),
        migrations.RunPython(tag_products, untag_products),
    ]
