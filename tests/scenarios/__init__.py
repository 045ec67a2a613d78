"""Migration packages used as the ``tests`` app's migrations (``MIGRATION_MODULES``).

Django reloads a migrations package when it loads it again, so state shared with tests lives
here rather than in the scenario packages.
"""

#: What the RunPython functions of the ``runpython`` scenario saw.
RUNPYTHON_SEEN: dict = {}
