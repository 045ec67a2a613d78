"""Fault-injection trials for pgmigrate: ``python -m chaos`` (see chaos/README.md)."""
