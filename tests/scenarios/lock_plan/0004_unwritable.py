from django.db import migrations


class NeedsTheDatabase(migrations.operations.base.Operation):
    """Writes its SQL from the catalog as the earlier migrations leave it (as Django's
    schema editor does for constraint names): it fails while only collecting SQL."""

    reduces_to_sql = True
    reversible = True

    def state_forwards(self, app_label, state):
        pass

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.collect_sql:
            raise ValueError("Found wrong number (0) of constraints for tests_delta(alpha_id)")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        pass

    def describe(self):
        return "Alter the foreign key of Delta"


class Migration(migrations.Migration):
    dependencies = [("tests", "0003_concurrently")]
    operations = [NeedsTheDatabase()]
