"""The audit app's final state, which its migrations build step by step."""

from django.db import models
from django.db.models import Q


class Event(models.Model):
    kind = models.CharField(max_length=50)
    product = models.ForeignKey("shop.Product", models.SET_NULL, null=True, related_name="+")
    customer = models.ForeignKey("crm.Customer", models.SET_NULL, null=True, related_name="+")
    payload = models.JSONField(default=dict)
    severity = models.SmallIntegerField(default=0)

    class Meta:
        db_table = "audit_journal"
        indexes = (models.Index(fields=["kind", "severity"], name="audit_event_kind_sev_idx"),)
        constraints = (
            models.CheckConstraint(
                condition=Q(severity__gte=0, severity__lte=5), name="audit_event_severity_0_5"
            ),
        )
