from django.db import migrations, models


class DeferRaw(migrations.operations.base.Operation):
    """Defers SQL as a plain string (as some third-party operations and backends do, where
    Django's own defer ``Statement`` objects)."""

    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        schema_editor.deferred_sql.append('CREATE INDEX "zeta_raw" ON "tests_zeta" ("alpha_id")')

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return "Defer an index"


class Migration(migrations.Migration):
    """A new model whose foreign key and partial unique constraint (named in the model) are
    deferred, SQL deferred as a string, then an operation without SQL: all deferred to the
    end of the migration (with ``PGMIGRATE_ATOMIC``, one transaction)."""

    dependencies = [("tests", "0002_statements")]
    operations = [
        migrations.CreateModel(
            "Zeta",
            [
                ("id", models.AutoField(primary_key=True)),
                ("alpha", models.ForeignKey("tests.Alpha", models.CASCADE)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=["alpha"], condition=models.Q(id__gt=0), name="zeta_alpha_uniq"
                    )
                ]
            },
        ),
        DeferRaw(),
        migrations.AlterModelOptions("Zeta", {"verbose_name": "zeta"}),
    ]
