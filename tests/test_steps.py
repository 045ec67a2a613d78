"""The steps of a migration: what each changes, and which delete data (``pgmigrate.steps``);
what counts as a lost connection (``pgmigrate.errors``)."""

import pytest
from django.db import DatabaseError, connections, migrations, models
from django.db.migrations.state import ProjectState

from pgmigrate.errors import is_connection_lost
from pgmigrate.steps import (
    ForwardSteps,
    Mode,
    backward_steps,
    destroys_data,
    mode,
    references_any,
    tables_changed,
)


def _migration(*operations, atomic=True):
    migration = migrations.Migration("0002_x", "shop")
    migration.operations = list(operations)
    migration.atomic = atomic
    return migration


def _state():
    state = ProjectState()
    for name in ("Author", "Book"):
        migrations.CreateModel(name, [("id", models.AutoField(primary_key=True))]).state_forwards(
            "shop", state
        )
    return state


def test_tables_changed_include_many_to_many_tables():
    migration = _migration(
        migrations.AddField("Book", "authors", models.ManyToManyField("Author"))
    )
    step = ForwardSteps(migration, _state(), 0)[0]
    assert tables_changed(step) == {"shop_book", "shop_book_authors"}


def test_tables_changed_by_database_operations_of_separate_database_and_state():
    operation = migrations.SeparateDatabaseAndState(
        database_operations=[migrations.AlterModelTable("Book", "shop_volume")]
    )
    step = ForwardSteps(_migration(operation), _state(), 0)[0]
    assert tables_changed(step) == {"shop_book", "shop_volume"}
    (backward,) = backward_steps(_migration(operation), _state(), 1)
    assert tables_changed(backward) == {"shop_book", "shop_volume"}


def test_plain_deferred_sql_may_refer_to_anything():
    assert references_any("CREATE INDEX ...", {"shop_book"})


def test_final_state_moves_past_the_steps_not_looked_at():
    migration = _migration(migrations.AddField("Book", "title", models.TextField(default="")))
    steps = ForwardSteps(migration, _state(), 0)
    assert "title" in steps.final_state.models["shop", "book"].fields


@pytest.mark.parametrize(
    ("operation", "forwards", "expected"),
    [
        (migrations.RemoveField("Book", "id"), True, True),
        (migrations.DeleteModel("Book"), True, True),
        (migrations.AddField("Book", "title", models.TextField(default="")), True, False),
        (migrations.AddField("Book", "title", models.TextField(default="")), False, True),
        (migrations.RunPython(print), True, True),  # irreversible
        (migrations.RunPython(print, print), True, False),
        (migrations.RunSQL("DROP TABLE shop_old", "SELECT 1"), True, True),
        (migrations.RunSQL("UPDATE shop_book SET id = id", "SELECT 1"), True, False),
        (migrations.RunSQL("SELECT 1", "DELETE FROM shop_book"), False, True),
        # Altering a column: lossy to another type, or to NOT NULL (NULLs are filled).
        (migrations.AlterField("Book", "price", models.IntegerField(null=True)), True, True),
        (migrations.AlterField("Book", "price", models.IntegerField(null=True)), False, True),
        (migrations.AlterField("Book", "price", models.FloatField(default=0)), True, True),
        (migrations.AlterField("Book", "price", models.FloatField(null=True)), True, False),
        (
            migrations.AlterField("Book", "price", models.FloatField(null=True, default=1)),
            True,
            False,
        ),
        (migrations.AlterField("Book", "title", models.CharField(max_length=10)), True, True),
        (
            migrations.AlterField("Book", "title", models.CharField(max_length=20, db_index=True)),
            True,
            False,
        ),
    ],
)
def test_destroys_data(operation, forwards, expected):
    migration = _migration(operation)
    state = _state()
    migrations.AddField("Book", "price", models.FloatField(null=True)).state_forwards(
        "shop", state
    )
    migrations.AddField("Book", "title", models.CharField(max_length=20)).state_forwards(
        "shop", state
    )
    if forwards:
        step = ForwardSteps(migration, state, 0)[0]
    else:
        (step,) = backward_steps(migration, state, 1)
    assert destroys_data(step, connections["default"]) is expected


def test_a_statement_list_keeping_session_state_and_needing_no_transaction_runs_as_django():
    operation = migrations.RunSQL(["SET work_mem = '1GB'", "VACUUM shop_book"])
    assert mode(_migration(operation, atomic=False), operation, True) is Mode.AUTOCOMMIT


@pytest.mark.django_db(transaction=True)
def test_a_closed_connection_is_lost_and_an_open_one_is_not():
    connection = connections["default"]
    connection.ensure_connection()
    assert not is_connection_lost(DatabaseError("no answer"), "default")
    connection.close()
    assert is_connection_lost(DatabaseError("no answer"), "default")
    assert not is_connection_lost(ValueError("not a database error"), "default")
    assert not is_connection_lost(None, "default")


def test_released_steps_are_computed_again_alike():
    """A transaction of many operations keeps only the states a retry from its first step
    needs (memory stays flat, as in Django's apply); a released step comes back the same."""
    fields = [f"f{number}" for number in range(6)]
    migration = _migration(
        *(migrations.AddField("Book", name, models.IntegerField(null=True)) for name in fields)
    )
    steps = ForwardSteps(migration, _state(), 0)
    before = [sorted(steps[index].to_state.models["shop", "book"].fields) for index in range(6)]
    steps.release(1, 5)
    assert sorted(steps._steps) == [0, 1, 5]
    again = [sorted(steps[index].to_state.models["shop", "book"].fields) for index in range(6)]
    assert again == before
    assert "f3" in again[3] and "f4" not in again[3]
