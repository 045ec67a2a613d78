from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_event_severity")]
    operations = [
        migrations.RemoveField(model_name="snapshot", name="size"),
        migrations.DeleteModel(name="Snapshot"),
        migrations.AlterModelTable(name="event", table="audit_journal"),
    ]
