from django.db import migrations, models
from django.db.models import Q


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_seed_events")]
    operations = [
        migrations.AddField(
            model_name="event", name="severity", field=models.SmallIntegerField(default=0)
        ),
        migrations.AlterField(
            model_name="event", name="kind", field=models.CharField(max_length=50)
        ),
        migrations.AddConstraint(
            model_name="event",
            constraint=models.CheckConstraint(
                condition=Q(severity__gte=0, severity__lte=5), name="audit_event_severity_0_5"
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["kind", "severity"], name="audit_event_kind_sev_idx"),
        ),
    ]
