from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0002_record")]
    operations = [migrations.RunSQL("SELECT 1 / 0", migrations.RunSQL.noop)]
