from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("crm", "0003_customer_favourite")]
    operations = [
        migrations.RenameModel(old_name="Note", new_name="Interaction"),
        migrations.AlterModelTable(name="customer", table="crm_client"),
        migrations.RemoveField(model_name="customer", name="tier"),
    ]
