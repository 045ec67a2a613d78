"""Migration packages used as the ``tests`` app's migrations (``MIGRATION_MODULES``).

Every scenario's ``0001_initial`` is ``InitialMigration``: tables alpha, beta and gamma.

Django reloads a migrations package when it loads it again, so state shared with tests lives
here rather than in the scenario packages.
"""

from django.db import migrations, models


def _table(name: str) -> migrations.CreateModel:
    return migrations.CreateModel(
        name, [("id", models.AutoField(primary_key=True)), ("name", models.TextField(default=""))]
    )


class InitialMigration(migrations.Migration):
    """The first migration of every scenario: three small tables."""

    initial = True
    operations = [_table("Alpha"), _table("Beta"), _table("Gamma")]


#: What the RunPython functions of the ``runpython`` scenario saw.
RUNPYTHON_SEEN: dict = {}

#: The ``own_sessions`` scenario: the pid of the session its code opened, and how it ended.
OWN_SESSIONS: dict = {}

#: The ``resume`` scenario's checkpoint that fails (1, 2 or 3), or None.
RESUME_FAIL_AT: dict = {"checkpoint": None}

#: The ``fingerprint`` scenario: whether its operation 2 fails, and a field's max_length.
FINGERPRINT: dict = {"fail": False, "max_length": 10}


#: A function that takes 5 ms a call (a row of a big table): it makes index builds slow.
SLOW_FUNCTION = """
CREATE FUNCTION tests_slow(value text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pg_sleep(0.005);
    RETURN value;
END $$
"""

#: The ``irreversible`` scenario: whether its operation 2 fails.
IRREVERSIBLE: dict = {"fail": False}

#: The ``half_initial`` scenario: whether the RunPython of its 0001 fails.
HALF_INITIAL: dict = {"fail": False}

#: The ``edit_later`` scenario: the SQL and hints of its operation 2 (read at import).
EDIT_LATER: dict = {
    "sql": "INSERT INTO tests_beta (id, name) VALUES (1, 'operation 2')",
    "hints": {},
}

#: The ``statement_list`` scenario: the statements of its RunSQL (read at import).
STATEMENT_LIST: dict = {
    "sql": [
        "UPDATE tests_alpha SET name = name || '+'",
        "INSERT INTO tests_gamma (name) VALUES ('statement 2')",
        "SELECT 1 / 0",
    ]
}

#: The ``lock_plan_do`` scenario: the statements of its DO block (read at import), by
#: default a conditional index build, as RunSQL often holds.
LOCK_PLAN_DO: dict = {
    "block": "IF NOT EXISTS (SELECT 1 FROM pg_indexes WHERE indexname = 'tests_gamma_name')"
    " THEN CREATE INDEX tests_gamma_name ON tests_gamma (name); END IF;"
}

#: The ``system_exit`` scenario: whether its RunPython raises SystemExit(3).
SYSTEM_EXIT: dict = {"exit": False}

#: The ``unicode_error`` scenario: the error its RunPython raised.
RAISED: dict = {}


def lock_plan_python(apps, schema_editor):
    """The ``lock_plan`` scenario's RunPython: the lock plan never runs it."""
    RUNPYTHON_SEEN["lock_plan"] = True


#: The ``rename_resume`` scenario: whether its last operation fails, and a field's max_length
#: (read at import).
RENAME_RESUME: dict = {"fail": False, "max_length": 10}


def rename_resume_check(apps, schema_editor):
    """The ``rename_resume`` scenario's last operation."""
    if RENAME_RESUME["fail"]:
        raise RuntimeError("the last operation fails on purpose")


#: The ``search_path`` scenario: whether its check operation fails.
SEARCH_PATH: dict = {"fail": False}


def search_path_check(apps, schema_editor):
    """The ``search_path`` scenario's operation between its two changes of another schema."""
    if SEARCH_PATH["fail"]:
        raise RuntimeError("the check fails on purpose")
