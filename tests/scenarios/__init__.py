"""Migration packages used as the ``tests`` app's migrations (``MIGRATION_MODULES``).

Django reloads a migrations package when it loads it again, so state shared with tests lives
here rather than in the scenario packages.
"""

#: What the RunPython functions of the ``runpython`` scenario saw.
RUNPYTHON_SEEN: dict = {}

#: The ``resume`` scenario's checkpoint that fails (1, 2 or 3), or None.
RESUME_FAIL_AT: dict = {"checkpoint": None}
