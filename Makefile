# Development tasks. Every target sets up its own virtualenv first:
#   make test ARGS="-k lock"   make demo   make lint   make format   make bench   make clean
# PostgreSQL: $DATABASE_URL if set, else a throwaway server (tests/pgserver.py).

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=

.PHONY: help venv test demo lint format bench clean

help:
	@echo "make test | demo | lint | format | bench | clean   (ARGS=... for test/demo/bench)"

# Re-install only when the project's dependencies may have changed.
$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

venv: $(INSTALLED)

test: $(INSTALLED)
	$(BIN)/pytest $(ARGS)

demo: $(INSTALLED)
	$(BIN)/python -m demo $(ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(INSTALLED)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) .venv-* build dist *.egg-info .pytest_cache .ruff_cache .coverage htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
