from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            'SET search_path = review13, public; CREATE INDEX ON "Outside Mixed" (name)',
            migrations.RunSQL.noop,
        ),
    ]
