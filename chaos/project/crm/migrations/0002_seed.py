"""12,000 customers and 4,000 notes, explicit ids."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]
    operations = [
        migrations.RunSQL(
            [
                "INSERT INTO crm_customer (id, name, email, tier)"
                " SELECT g, 'customer ' || g, 'c' || g || '@example.com', g % 4"
                " FROM generate_series(1, 12000) AS g",
                "INSERT INTO crm_note (id, customer_id, body)"
                " SELECT g, 1 + g * 7 % 12000, 'called about order ' || g"
                " FROM generate_series(1, 4000) AS g",
            ],
            reverse_sql=["DELETE FROM crm_note", "DELETE FROM crm_customer"],
        ),
    ]
