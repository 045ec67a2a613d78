"""The lock plan: what each pending migration's statements will lock, rewrite and scan, on
the live database, before anything runs (``manage.py pgmigrate --lock-plan``)."""
