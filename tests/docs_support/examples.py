"""Running the Python examples of the docs and checking what they define.

Conventions of the docs' Python blocks (see ``tests/test_docs.py``):

- ``# pgmigrate-docs: skip (reason)`` on the first line: the block is only compiled, and its
  ``call_command("migrate", ...)`` calls are checked against the command's options.
- ``# pgmigrate-docs: expect pgmigrate.E003`` on the first line: a settings example that must
  produce exactly these pgmigrate system-check messages.
- ``# some/package/module.py`` on the first line: the block is that module. It is executed as
  such (so settings can name ``"some.package.module.Class"``), and ``sys.modules`` forgets it
  after the tests.
- Any other block runs in a namespace shared with the earlier blocks of the same file.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import logging
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.core.management import get_commands, load_command_class
from django.core.management.base import BaseCommand
from django.db import migrations
from django.db.migrations.operations.base import Operation
from django.test import override_settings

import pgmigrate
from pgmigrate import checks as pgmigrate_checks
from pgmigrate import events, signals
from pgmigrate.command import MigrateCommand
from tests.docs_support.markdown import Block

SKIP = "# pgmigrate-docs: skip"
EXPECT = "# pgmigrate-docs: expect"
MODULE = re.compile(r"^# (?P<path>[A-Za-z_]\w*(?:/\w+)+\.py)$")
SETTING_NAME = re.compile(r"\bPGMIGRATE_[A-Z][A-Z_]*[A-Z]\b")
CHECK_ID = re.compile(r"\bpgmigrate\.[EW]\d{3}\b")
REQUIRED_APPS = {"pgactivity", "pglock", "pgmigrate"}

#: Attributes every ``LogRecord`` has: event fields must not use these names.
LOG_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

#: Sample fields of each event, as pgmigrate sends them (the query only with
#: PGMIGRATE_LOG_QUERIES). Used to call the docs' signal receivers and formatters.
COMMON_FIELDS = {
    "database": "default",
    "backend_pid": 7193,
    "migration": "shop.0002_account_nickname",
}
EVENT_FIELDS: dict[str, dict[str, Any]] = {
    "migration_started": {},
    "migration_finished": {"status": "applied", "duration": 0.021, "lock_wait": 0.006},
    "blocked": {},
    "blocker_shown": {
        "blocker_pid": 7200,
        "application_name": "nightly-report",
        "usename": "reports",
        "state": "idle in transaction",
        "action": "Show",
        "transaction_age": 12.4,
    },
    "blocker_ended": {
        "blocker_pid": 7200,
        "application_name": "forgotten-report",
        "state": "idle in transaction",
        "action": "Terminate",
    },
    "action_failed": {
        "blocker_pid": 7402,
        "application_name": "app",
        "state": "unknown",
        "action": "Terminate",
        "error": "permission denied to terminate process",
        "hint": 'GRANT pg_signal_backend TO "migrator"; (run as a superuser)',
    },
    "lock_timeout": {"attempt": 1, "attempts": 3, "gave_up": False},
    "retry": {"attempt": 2, "delay": 0.37},
    "resumed": {"operation": 4},
    "stepped_aside": {
        "lock": "AccessExclusiveLock on shop_account",
        "blockers": [
            {
                "pid": 7230,
                "application_name": "pg_dump",
                "state": "idle in transaction",
                "usename": "backup",
                "transaction_age": 12.4,
                "reason": "protected: PGMIGRATE_PROTECTED: application_name 'pg_dump'",
            }
        ],
        "prepared": [],
    },
    "waiting_aside": {
        "waited": 1.0,
        "lock": "AccessExclusiveLock on shop_account",
        "blockers": [],
        "prepared": [],
    },
    "stepped_back": {"waited": 3.478, "outcome": "gone"},
    "statement_progress": {
        "elapsed": 12.3,
        "wait_event_type": "Lock",
        "wait_event": "virtualxid",
        "command": "CREATE INDEX CONCURRENTLY",
        "phase": "waiting for old snapshots",
        "blocks_done": 0,
        "blocks_total": 0,
        "tuples_done": 0,
        "tuples_total": 0,
        "blockers": [
            {
                "pid": 7230,
                "application_name": "pg_dump",
                "transaction_age": 48.2,
                "fate": "left alone: protected: PGMIGRATE_PROTECTED: application_name 'pg_dump'",
            }
        ],
    },
}


def event_fields(event: str) -> dict[str, Any]:
    return {**EVENT_FIELDS[event], "event": event, **COMMON_FIELDS}


def marker(block: Block) -> tuple[str, str]:
    """``("skip" | "expect" | "module" | "", argument)`` for the block's first line."""
    first = block.first_line
    if first.startswith(SKIP):
        return "skip", first[len(SKIP) :].strip()
    if first.startswith(EXPECT):
        return "expect", first[len(EXPECT) :].strip()
    match = MODULE.match(first)
    if match:
        return "module", match["path"]
    assert not first.startswith("# pgmigrate-docs"), f"{block.where}: unknown marker {first!r}"
    return "", ""


class FakeCommand:
    """What a blocking action's ``worker`` may use of the command, checked strictly."""

    verbosity = 1

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def notice(self, message: str, *, warning: bool = False) -> None:
        assert isinstance(message, str), message
        self.notices.append(message)

    def event(self, event: str, message: str, **fields: Any) -> None:
        assert event in events.EVENTS, f"{event!r} is not a pgmigrate event"
        clash = set(fields) & LOG_RECORD_ATTRIBUTES
        assert not clash, f"event fields {sorted(clash)} clash with LogRecord attributes"
        self.events.append((event, message, fields))


class DocModules:
    """Modules defined by docs examples (``# package/module.py`` blocks)."""

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}
        self.added: list[str] = []

    def load(self, path: str, block: Block) -> types.ModuleType:
        name = path.removesuffix(".py").replace("/", ".")
        parts = name.split(".")
        root = parts[0]
        if root in sys.modules and root not in self.added:
            raise AssertionError(f"{block.where}: {root!r} is a real module; pick another name")
        parent: types.ModuleType | None = None
        for depth in range(1, len(parts) + 1):
            dotted = ".".join(parts[:depth])
            module = sys.modules.get(dotted)
            if module is None or depth == len(parts):
                module = types.ModuleType(dotted)
                module.__file__ = f"<docs {block.where}>"
                if depth < len(parts):
                    module.__path__ = []
                sys.modules[dotted] = module
                if dotted not in self.added:
                    self.added.append(dotted)
                if parent is not None:
                    setattr(parent, parts[depth - 1], module)
            parent = module
        assert parent is not None
        exec(compile(block.code, block.where, "exec"), parent.__dict__)
        self.sources[path] = block.code
        return parent

    def write_tree(self, directory: Path) -> None:
        """Write the modules as files under ``directory`` (with package ``__init__.py``)."""
        for path, source in self.sources.items():
            target = directory / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(source, encoding="utf-8")
            package = target.parent
            while package != directory:
                (package / "__init__.py").touch()
                package = package.parent

    def cleanup(self) -> None:
        for name in self.added:
            sys.modules.pop(name, None)
        self.added.clear()


@contextlib.contextmanager
def saved_receivers() -> Iterator[None]:
    """Disconnect, afterwards, every receiver connected to pgmigrate's signals meanwhile."""
    saved = {name: list(getattr(signals, name).receivers) for name in events.EVENTS}
    try:
        yield
    finally:
        for name, receivers in saved.items():
            signal = getattr(signals, name)
            with signal.lock:
                signal.receivers[:] = receivers
                signal.sender_receivers_cache.clear()


def _receiver_keys() -> dict[str, set[Any]]:
    return {
        name: {entry[0] for entry in getattr(signals, name).receivers} for name in events.EVENTS
    }


def assigned_names(tree: ast.Module) -> list[str]:
    names = []
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign):
            targets = [node.target]
        names += [target.id for target in targets if isinstance(target, ast.Name)]
    return names


def defined_classes(tree: ast.Module) -> list[str]:
    return [node.name for node in tree.body if isinstance(node, ast.ClassDef)]


# What each kind of example must satisfy ------------------------------------------------


def validate_settings(values: dict[str, Any], expected: set[str]) -> None:
    """Run pgmigrate's accessors and system checks with ``values`` as the only PGMIGRATE_*
    settings; exactly the ``expected`` pgmigrate check ids must come out."""
    with override_settings():
        for name in dir(settings):
            if SETTING_NAME.fullmatch(name):
                delattr(settings, name)
        for name, value in values.items():
            setattr(settings, name, value)
        found = {
            message.id: message.msg
            for message in checks.run_checks()
            if message.id and message.id.startswith("pgmigrate.")
        }
        if not expected:
            for _check_id, accessor in pgmigrate_checks.SETTING_CHECKS:
                accessor()
    assert set(found) == expected, f"system checks said {found}, expected {sorted(expected)}"


def validate_action_class(cls: type) -> None:
    """Instantiable without arguments, valid, deep-copyable, and its worker runs on a real
    (empty) ``BlockedPGLock`` queryset with a strict stand-in for the command."""
    import pglock.models
    from pglock.models import BlockedPGLock

    assert cls.worker is not pgmigrate.BlockingAction.worker, "worker() is not implemented"
    action = cls()  # the setting may name the class: it must work without arguments
    action.validate()
    action = copy.deepcopy(action)  # what pgmigrate does at the start of each run
    command = FakeCommand()
    # django-pglock asks the server for its version while it compiles a query, even an empty
    # one: without its CTEs, an empty queryset compiles to nothing and needs no database.
    with mock.patch.object(pglock.models.PGTableQueryCompiler, "get_ctes", lambda self: []):
        result = action(command, BlockedPGLock.objects.none())
    assert isinstance(result, list), f"worker() returned {result!r}, not a list of pids"


def validate_command_class(cls: type) -> None:
    command = cls()
    command.create_parser("manage.py", "migrate")


def validate_formatter_class(cls: type) -> None:
    record = logging.makeLogRecord(
        {
            "name": "pgmigrate",
            "msg": "pgmigrate: terminated pid 7200 (application 'forgotten-report', ...)",
            "levelno": logging.WARNING,
            "levelname": "WARNING",
            **event_fields("blocker_ended"),
        }
    )
    output = cls().format(record)
    assert "terminated pid 7200" in output, output
    if output.lstrip().startswith("{"):
        assert json.loads(output)["event"] == "blocker_ended"


def validate_migration_class(cls: type) -> None:
    migration = cls("0001_docs_example", "shop")
    assert migration.operations, "a migration example without operations"
    for operation in migration.operations:
        assert isinstance(operation, Operation), operation
        operation.describe()


def validate_class(cls: type) -> None:
    if issubclass(cls, pgmigrate.BlockingAction):
        validate_action_class(cls)
    elif issubclass(cls, MigrateCommand):
        validate_command_class(cls)
    elif issubclass(cls, logging.Formatter):
        validate_formatter_class(cls)
    elif issubclass(cls, migrations.Migration):
        validate_migration_class(cls)
    elif issubclass(cls, AppConfig):
        assert isinstance(cls.name, str) and cls.name
    else:
        raise AssertionError(f"no validation for a class like {cls!r}: add one to the tests")


def validate_event_calls(tree: ast.Module) -> None:
    """``cmd.event("name", ...)``: a known event, and no field named like a LogRecord
    attribute (``logging`` would refuse the record)."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr != "event" or not node.args:
            continue
        name = node.args[0]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            assert name.value in events.EVENTS, f"{name.value!r} is not a pgmigrate event"
            clash = {k.arg for k in node.keywords if k.arg} & LOG_RECORD_ATTRIBUTES
            assert not clash, f"event fields {sorted(clash)} clash with LogRecord attributes"


_LOGGING_CHECK = textwrap.dedent(
    """
    import ast, logging, logging.config, sys
    logging.config.dictConfig(ast.literal_eval(sys.argv[1]))
    fields = ast.literal_eval(sys.argv[2])
    logging.getLogger("pgmigrate").warning("pgmigrate: terminated pid 7200", extra=fields)
    """
)


def validate_logging(value: Any, modules: DocModules, workdir: Path) -> None:
    """Apply a ``LOGGING`` example in a child process (with the docs' modules importable)
    and log one pgmigrate event through it."""
    assert "pgmigrate" in value.get("loggers", {}), "LOGGING does not configure 'pgmigrate'"
    modules.write_tree(workdir)
    result = subprocess.run(
        [sys.executable, "-c", _LOGGING_CHECK, repr(value), repr(event_fields("blocker_ended"))],
        cwd=workdir,
        env={"PYTHONPATH": str(workdir), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "terminated pid 7200" in result.stdout + result.stderr, result


def validate_call_command(tree: ast.Module) -> None:
    """``call_command("migrate" | "pgmigrate", *args, **options)``: real options only."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name != "call_command" or not node.args:
            continue
        arguments = [ast.literal_eval(arg) for arg in node.args]
        command, args = arguments[0], arguments[1:]
        parser = command_parser(command)
        valid = {action.dest for action in parser._actions} | set(
            load_command(command).stealth_options
        )
        unknown = {k.arg for k in node.keywords if k.arg} - valid
        assert not unknown, f"call_command({command!r}) has no options {sorted(unknown)}"
        parser.parse_args([str(arg) for arg in args])


def load_command(name: str) -> BaseCommand:
    if name in ("migrate", "pgmigrate"):
        return MigrateCommand()
    commands = get_commands()
    assert name in commands, f"manage.py {name}: no such command"
    command = load_command_class(commands[name], name)
    assert isinstance(command, BaseCommand)
    return command


def command_parser(name: str) -> Any:
    """The argparse parser of ``manage.py name``, accepting any database alias."""
    parser = load_command(name).create_parser("manage.py", name)
    for action in parser._actions:
        if action.dest in ("database", "databases"):
            action.choices = None  # docs use aliases such as "analytics"
    return parser


# Running the blocks of one file ---------------------------------------------------------


@dataclass
class FileRun:
    """The outcome of a file's Python blocks: ``failures`` maps a block to its error."""

    namespace: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    ran: int = 0
    skipped: int = 0


def run_python_blocks(blocks: list[Block], modules: DocModules, workdir: Path) -> FileRun:
    run = FileRun(namespace={"__name__": "docs_example"})
    for block in blocks:
        try:
            ran = _run_block(block, run.namespace, modules, workdir)
        except Exception as exc:
            run.failures[block.where] = f"{type(exc).__name__}: {exc}"
            continue
        if ran:
            run.ran += 1
        else:
            run.skipped += 1
    return run


def _run_block(
    block: Block, namespace: dict[str, Any], modules: DocModules, workdir: Path
) -> bool:
    kind, argument = marker(block)
    tree = ast.parse(block.code, block.where)
    if kind == "skip":
        assert argument, "say why the block cannot run: # pgmigrate-docs: skip (reason)"
        compile(tree, block.where, "exec")
        validate_call_command(tree)
        return False
    validate_event_calls(tree)
    before = _receiver_keys()
    if kind == "module":
        scope = modules.load(argument, block).__dict__
    else:
        exec(compile(tree, block.where, "exec"), namespace)
        scope = namespace

    names = assigned_names(tree)
    values = {name: scope[name] for name in names if SETTING_NAME.fullmatch(name)}
    expected = set(CHECK_ID.findall(argument)) if kind == "expect" else set()
    if kind == "expect":
        assert expected, "name the check ids: # pgmigrate-docs: expect pgmigrate.E003"
    if values or expected:
        validate_settings(values, expected)
    if "INSTALLED_APPS" in names:
        missing = REQUIRED_APPS - set(scope["INSTALLED_APPS"])
        assert not missing, f"INSTALLED_APPS lacks {sorted(missing)}"
    if "DATABASES" in names:
        for alias, database in scope["DATABASES"].items():
            assert database["ENGINE"] == "django.db.backends.postgresql", alias
    if "SILENCED_SYSTEM_CHECKS" in names:
        known = set(CHECK_ID.findall(Path(pgmigrate_checks.__file__).read_text()))
        unknown = set(scope["SILENCED_SYSTEM_CHECKS"]) - known
        assert not unknown, f"no such checks: {sorted(unknown)}"
    if "LOGGING" in names:
        validate_logging(scope["LOGGING"], modules, workdir)
    for name in defined_classes(tree):
        validate_class(scope[name])
    _call_new_receivers(before, scope)
    return True


def _call_new_receivers(before: dict[str, set[Any]], scope: dict[str, Any]) -> None:
    """Call each receiver the block connected with the fields its signal carries."""
    functions = {id(value): value for value in scope.values() if callable(value)}
    for event, keys in _receiver_keys().items():
        for key in keys - before[event]:
            receiver = functions.get(key[0])
            assert receiver is not None, f"a receiver of {event} that the test cannot find"
            receiver(sender=MigrateCommand, **event_fields(event))
