"""The pgmigrate benchmark suite: how long the app stalls while ``migrate`` runs.

``python -m bench`` (or ``make bench``) compares pgmigrate with plain Django ``migrate`` on a
busy PostgreSQL database. See ``python -m bench --help``.
"""
