"""The ``live`` scenario: index builds long enough to show their progress (``pgmigrate.live``)."""

#: Session settings that make an index build on the big table take seconds: an external sort
#: in one process (no parallel workers, little memory).
SLOW_BUILD = "SET max_parallel_maintenance_workers = 0; SET maintenance_work_mem = '1MB'"
