from django.db import migrations


class Migration(migrations.Migration):
    operations = [
        migrations.RunSQL(["CREATE TABLE tests_partly (id int)", "SELECT 1 / 0"]),
    ]
