from django.db import migrations, models


class StateOnly(migrations.operations.base.Operation):
    """A custom operation that changes no SQL and says so (``reduces_to_sql = False``)."""

    reduces_to_sql = False
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return "Remember something"


class Migration(migrations.Migration):
    """Statement by statement (``atomic = False``): a new model whose foreign key is
    deferred past SQL that runs outside a transaction, a removed field whose transaction
    lasts up to that SQL, SQL on a table that does not exist yet, operations without SQL."""

    atomic = False
    dependencies = [("tests", "0001_initial")]
    operations = [
        migrations.CreateModel(
            "Epsilon",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alpha", models.ForeignKey("tests.Alpha", models.CASCADE)),
            ],
        ),
        migrations.RunSQL("UPDATE tests_gamma SET name = name", migrations.RunSQL.noop),
        migrations.RemoveField("Beta", "name"),
        migrations.RunSQL(
            "ALTER TABLE tests_later ADD COLUMN x int DEFAULT random()", migrations.RunSQL.noop
        ),
        migrations.AlterModelOptions("Gamma", {"verbose_name": "gamma"}),
        StateOnly(),
    ]
