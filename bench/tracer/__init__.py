"""A Django app that timestamps every SQL statement of the process (for ``--scenario profile``).

Each connection gets an ``execute_wrapper`` when it connects; at exit the statements are
written as JSON to ``$BENCH_TRACE_FILE``: thread name, start and end (``time.time()``), SQL.
"""
