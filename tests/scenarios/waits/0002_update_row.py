from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL("UPDATE tests_alpha SET name = 'migrated' WHERE id = 1"),
    ]
