from django.db import migrations, models

ROWS = 10_000


def add_accounts(apps, schema_editor):
    Account = apps.get_model("demo", "Account")
    Account.objects.bulk_create(Account(name=f"account {i}") for i in range(ROWS))


class Migration(migrations.Migration):
    initial = True
    operations = [
        migrations.CreateModel(
            "Account",
            [("id", models.AutoField(primary_key=True)), ("name", models.TextField())],
        ),
        migrations.RunPython(add_accounts, migrations.RunPython.noop),
    ]
