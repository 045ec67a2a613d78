from django.db import models


class Row(models.Model):
    """The table the app reads and migration 0002 adds a column to."""

    value = models.IntegerField()
    payload = models.CharField(max_length=100)
    note = models.CharField(max_length=100, null=True)

    class Meta:
        db_table = "bench_row"
