from django.db import migrations

EVENTS = 2_000
KINDS = ("viewed", "ordered", "returned", "reviewed")


def record_events(apps, schema_editor):
    """2,000 events through the ORM (explicit ids) and one snapshot."""
    Event = apps.get_model("audit", "Event")
    Event.objects.bulk_create(
        Event(
            id=n,
            kind=KINDS[n % len(KINDS)],
            product_id=1 + n * 3 % 8000,
            customer_id=1 + n * 5 % 12000 if n % 2 else None,
            payload={"n": n, "source": "seed"},
        )
        for n in range(1, EVENTS + 1)
    )
    apps.get_model("audit", "Snapshot").objects.create(id=1, label="seeded", size=EVENTS)


def forget_events(apps, schema_editor):
    apps.get_model("audit", "Snapshot").objects.all().delete()
    apps.get_model("audit", "Event").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]
    operations = [migrations.RunPython(record_events, forget_events)]
