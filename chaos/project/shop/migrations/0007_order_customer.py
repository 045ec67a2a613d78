import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0006_tags"), ("crm", "0004_renames")]
    operations = [
        migrations.AddField(
            model_name="order",
            name="customer",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="orders",
                to="crm.customer",
            ),
        ),
        migrations.RunSQL(
            "UPDATE shop_order SET customer_id = 1 + id % 12000 WHERE id % 3 = 0",
            reverse_sql=migrations.RunSQL.noop,
        ),
    ]
