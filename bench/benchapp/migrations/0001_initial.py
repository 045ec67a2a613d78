from django.db import migrations, models

ROWS = 10_000


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Row",
            fields=[
                ("id", models.AutoField(primary_key=True, serialize=False)),
                ("value", models.IntegerField()),
                ("payload", models.CharField(max_length=100)),
            ],
            options={"db_table": "bench_row"},
        ),
        migrations.RunSQL(
            "INSERT INTO bench_row (value, payload)"
            f" SELECT n, md5(n::text) FROM generate_series(1, {ROWS}) AS n",
            migrations.RunSQL.noop,
        ),
    ]
