from django.db import migrations


class Migration(migrations.Migration):
    """A view of alpha and a materialized view of beta's names."""

    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "CREATE VIEW tests_alpha_names AS SELECT id, name FROM tests_alpha;"
            " CREATE MATERIALIZED VIEW tests_beta_names AS"
            " SELECT name, count(*) FROM tests_beta GROUP BY name",
            "DROP VIEW tests_alpha_names; DROP MATERIALIZED VIEW tests_beta_names",
        ),
    ]
