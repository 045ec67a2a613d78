from django.db import migrations

from tests.scenarios import STATEMENT_LIST


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("tests", "0001_initial")]
    # Statement by statement; the tests edit the list between runs.
    operations = [migrations.RunSQL(list(STATEMENT_LIST["sql"]), migrations.RunSQL.noop)]
