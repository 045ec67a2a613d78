from django.db import migrations


class Migration(migrations.Migration):
    """A migration without operations (Django's auth.0006_require_contenttypes_0002 is one)."""

    dependencies = [("tests", "0001_initial")]
    operations = []
