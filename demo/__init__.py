"""A self-contained demo of pgmigrate: ``python -m demo`` (or ``make demo``)."""
