"""The documentation (docs/, README.md, CHANGELOG.md) agrees with the code.

- Every ``PGMIGRATE_*`` setting of the code is in the settings reference, with its real
  default and its check id, and the docs name no setting that does not exist.
- Every check id of ``pgmigrate/checks.py`` is in the checks reference, and vice versa.
- Every pgmigrate option of ``migrate`` is in the command reference, and vice versa.
- Every event is documented, and the JSON report example has the real keys.
- Every code example works: Python blocks run (see ``tests/docs_support/examples.py`` for the
  ``# pgmigrate-docs: ...`` markers), settings examples pass pgmigrate's checks, classes are
  validated, signal receivers are called; ``manage.py`` lines in shell blocks parse with the
  real command's options.
- ``mkdocs build --strict`` passes (when the ``docs`` extra is installed).

No database is needed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

import pgmigrate
from pgmigrate import checks, config, events, options, signals
from pgmigrate.events import MigrationFigures, RunEvents
from tests.docs_support import examples
from tests.docs_support.markdown import (
    ROOT,
    Block,
    code_blocks,
    first_cells,
    headings,
    sections,
    table_cell,
)

DOCS = ROOT / "docs"
SETTINGS_PAGE = DOCS / "reference" / "settings.md"
CHECKS_PAGE = DOCS / "reference" / "checks.md"
COMMAND_PAGE = DOCS / "reference" / "command.md"
OBSERVABILITY_PAGE = DOCS / "guides" / "observability.md"
#: Every Markdown file whose examples and names are checked.
DOC_FILES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted(DOCS.rglob("*.md"))]
PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console"}
#: The one setting whose default is a list spelled out under its table.
LISTED_DEFAULT = "PGMIGRATE_STATEMENT_TIMEOUT_EXEMPT"
#: Blocks that may be marked ``skip``: keep this small.
MAX_SKIPPED = 3


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def code_settings() -> set[str]:
    """Every ``PGMIGRATE_*`` name in the package's source."""
    found: set[str] = set()
    for path in (ROOT / "pgmigrate").rglob("*.py"):
        found |= set(examples.SETTING_NAME.findall(path.read_text(encoding="utf-8")))
    return found


def setting_accessors() -> dict[str, tuple[str, object]]:
    """Setting name -> (check id, accessor), from ``pgmigrate.checks.SETTING_CHECKS``."""
    found = {}
    for check_id, accessor in checks.SETTING_CHECKS:
        doc = accessor.__doc__ or ""
        assert doc.startswith("``PGMIGRATE_"), f"{accessor.__name__}: docstring names no setting"
        found[examples.SETTING_NAME.search(doc).group()] = (check_id, accessor)
    return found


def code_check_ids() -> set[str]:
    return set(examples.CHECK_ID.findall((ROOT / "pgmigrate" / "checks.py").read_text()))


# Settings -------------------------------------------------------------------------------


def test_settings_page_lists_exactly_the_settings_of_the_code():
    in_code = code_settings()
    on_page = set(examples.SETTING_NAME.findall(SETTINGS_PAGE.read_text()))
    assert in_code - on_page == set(), "settings missing from docs/reference/settings.md"
    assert on_page - in_code == set(), "settings on the page that the code does not have"
    assert set(headings(SETTINGS_PAGE, 2)) == in_code, "one ## section per setting"


def test_every_setting_has_an_accessor_and_a_check():
    assert set(setting_accessors()) == code_settings()


def test_docs_name_only_real_settings():
    in_code = code_settings()
    for path in DOC_FILES:
        unknown = set(examples.SETTING_NAME.findall(path.read_text())) - in_code
        assert not unknown, f"{_relative(path)} names settings that do not exist: {unknown}"


@pytest.mark.parametrize("name", sorted(code_settings()))
def test_setting_section_gives_its_check_id(name):
    section = sections(SETTINGS_PAGE, 2)[name]
    check_id, _ = setting_accessors()[name]
    assert check_id in table_cell(section, "Check"), f"{name}: the Check row lacks {check_id}"


@pytest.mark.parametrize("name", sorted(code_settings()))
def test_setting_section_gives_the_real_default(name):
    section = sections(SETTINGS_PAGE, 2)[name]
    _, accessor = setting_accessors()[name]
    with override_settings():
        with contextlib.suppress(AttributeError):
            delattr(settings, name)
        actual = accessor()
    if name == LISTED_DEFAULT:
        for path in config.DEFAULT_STATEMENT_TIMEOUT_EXEMPT:
            assert f'"{path}"' in section, f"{name}: the default {path} is not spelled out"
        return
    cell = table_cell(section, "Default")
    match = re.fullmatch(r"`([^`]+)`", cell)
    assert match, f"{name}: the Default cell must be one Python expression in backticks"
    documented = eval(match[1], {"pgmigrate": pgmigrate, "timedelta": dt.timedelta})
    with override_settings(**{name: documented}):
        assert accessor() == actual, f"{name}: documented default {match[1]} is not the default"


# System checks --------------------------------------------------------------------------


def test_checks_page_lists_exactly_the_check_ids_of_the_code():
    in_code = code_check_ids()
    assert in_code, "no check ids found in pgmigrate/checks.py"
    on_page = set(examples.CHECK_ID.findall(CHECKS_PAGE.read_text()))
    assert in_code - on_page == set(), "check ids missing from docs/reference/checks.md"
    assert on_page - in_code == set(), "check ids on the page that the code does not have"
    assert set(headings(CHECKS_PAGE, 2)) == in_code, "one ## section per check id"


def test_docs_name_only_real_check_ids():
    in_code = code_check_ids()
    for path in DOC_FILES:
        unknown = set(examples.CHECK_ID.findall(path.read_text())) - in_code
        assert not unknown, f"{_relative(path)} names check ids that do not exist: {unknown}"


# The command ----------------------------------------------------------------------------


def pgmigrate_options() -> set[str]:
    """The option strings pgmigrate adds to ``migrate``."""
    parser = argparse.ArgumentParser()
    before = {s for action in parser._actions for s in action.option_strings}
    options.add_arguments(parser)
    return {s for action in parser._actions for s in action.option_strings} - before


def test_command_page_documents_every_pgmigrate_option():
    documented = {title.split()[0] for title in headings(COMMAND_PAGE, 3)}
    assert documented == pgmigrate_options()


def test_options_named_in_the_references_exist():
    real = {
        s for action in examples.command_parser("migrate")._actions for s in action.option_strings
    }
    for path in (COMMAND_PAGE, SETTINGS_PAGE):
        named = set(re.findall(r"`(--[a-z][a-z-]*)", path.read_text()))
        assert named - real == set(), f"{_relative(path)} names options migrate does not have"


# Events ---------------------------------------------------------------------------------


def test_signals_match_events():
    names = {
        name for name, value in vars(signals).items() if isinstance(value, type(signals.retry))
    }
    assert names == set(events.EVENTS)
    assert set(examples.EVENT_FIELDS) == set(events.EVENTS), "tests: sample fields out of date"


def test_observability_page_documents_every_event():
    section = sections(OBSERVABILITY_PAGE, 2)["Events"]
    named = {cell.strip("`") for cell in first_cells(section) if cell.startswith("`")}
    common = {"event", "database", "backend_pid", "migration"}
    assert named - common == set(events.EVENTS), "the events table and EVENTS differ"
    assert common <= named, "the fields every event has"


def test_report_example_has_the_real_keys():
    report_blocks = [
        block
        for block in code_blocks(OBSERVABILITY_PAGE)
        if block.lang == "json" and '"migrations"' in block.code
    ]
    assert len(report_blocks) == 1, "one JSON report example expected"
    example = json.loads(report_blocks[0].code)
    real = RunEvents(None, database="default", backend_pid=1, log_queries=False).report()
    assert set(example) == set(real)
    figure_keys = {f.name for f in MigrationFigures.__dataclass_fields__.values()}
    for migration in example["migrations"]:
        assert set(migration) == figure_keys


# Code examples --------------------------------------------------------------------------


def blocks_of(path: Path, langs: set[str]) -> list[Block]:
    return [block for block in code_blocks(path) if block.lang in langs]


@pytest.fixture(scope="module")
def python_examples(tmp_path_factory) -> Iterator[dict[Path, examples.FileRun]]:
    """Run every Python block of the docs once (module-scoped: later blocks and the shell
    examples may use the modules that earlier blocks define)."""
    modules = examples.DocModules()
    workdir = tmp_path_factory.mktemp("docs-modules")
    with examples.saved_receivers():
        try:
            yield {
                path: examples.run_python_blocks(blocks_of(path, PYTHON), modules, workdir)
                for path in DOC_FILES
            }
        finally:
            modules.cleanup()


@pytest.mark.parametrize("path", DOC_FILES, ids=_relative)
def test_python_examples(python_examples, path):
    run = python_examples[path]
    assert not run.failures, "\n".join(
        f"{where}: {error}" for where, error in run.failures.items()
    )


def test_python_examples_exist_and_few_are_skipped(python_examples):
    ran = sum(run.ran for run in python_examples.values())
    skipped = sum(run.skipped for run in python_examples.values())
    assert ran >= 20, f"only {ran} Python examples ran"
    assert skipped <= MAX_SKIPPED, f"{skipped} Python examples are marked skip"


#: Shell operators that end a command's arguments.
_OPERATORS = re.compile(r"^[|&;<>()]+$")


def manage_commands(block: Block) -> list[tuple[str, list[str]]]:
    """``(command, args)`` of each ``manage.py COMMAND ARGS`` in a shell block."""
    text = block.code.replace("\\\n", " ")
    lines = text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    found = []
    for line in lines:
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        tokens = list(lexer)
        for index, token in enumerate(tokens):
            if token.endswith("manage.py") and index + 1 < len(tokens):
                args = []
                for arg in tokens[index + 2 :]:
                    if _OPERATORS.match(arg):
                        break
                    args.append(arg)
                found.append((tokens[index + 1], args))
    return found


def shell_cases() -> list[tuple[Block, str, list[str]]]:
    return [
        (block, command, args)
        for path in DOC_FILES
        for block in blocks_of(path, SHELL)
        for command, args in manage_commands(block)
    ]


def test_shell_examples_exist():
    commands = [(command, args) for _, command, args in shell_cases()]
    assert len(commands) >= 20
    assert any(command == "pgmigrate" for command, _ in commands)


@pytest.mark.parametrize(
    ("block", "command", "args"),
    shell_cases(),
    ids=[f"{block.where} {command} {' '.join(args)}" for block, command, args in shell_cases()],
)
def test_shell_example_parses(python_examples, block, command, args):
    parsed = examples.command_parser(command).parse_args(args)
    action = getattr(parsed, "blocking_action", None)
    if command in ("migrate", "pgmigrate") and action is not None:
        options.parse_action(action)  # a name or an importable action (docs modules included)


# The site -------------------------------------------------------------------------------


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed: pip install -e '.[docs]' (or make docs)",
)
def test_mkdocs_build_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "index.html").exists()
