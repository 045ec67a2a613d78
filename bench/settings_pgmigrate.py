"""``migrate`` with pgmigrate installed (its default settings unless the bench sets one)."""

import os

from bench.settings_common import *  # noqa: F403
from bench.settings_common import BENCH_APPS

INSTALLED_APPS = ["pgactivity", "pglock", "pgmigrate", *BENCH_APPS]

if "BENCH_PGMIGRATE_ACTION" in os.environ:  # "" means None (do nothing)
    PGMIGRATE_BLOCKING_ACTION = os.environ["BENCH_PGMIGRATE_ACTION"] or None

# Scenarios "aside", "aside-show", "retries": "0" queues behind the blockers (the behaviour
# before stepping aside), "1" steps aside (the default).
if os.environ.get("BENCH_PGMIGRATE_STEP_ASIDE"):
    PGMIGRATE_STEP_ASIDE = os.environ["BENCH_PGMIGRATE_STEP_ASIDE"] == "1"

if os.environ.get("BENCH_TRACE_FILE"):  # --scenario profile: timestamp every statement
    INSTALLED_APPS.append("bench.tracer")

# Scenarios "aside", "retries", "watcher-cost": a blocker pgmigrate may not end; "retries":
# a short lock timeout, retries.
if os.environ.get("BENCH_PGMIGRATE_PROTECTED_APP"):
    PGMIGRATE_PROTECTED = {"application_name": [os.environ["BENCH_PGMIGRATE_PROTECTED_APP"]]}
for _name in ("LOCK_TIMEOUT", "LOCK_RETRY_DELAY", "LOCK_RETRY_MAX_DELAY"):
    if os.environ.get(f"BENCH_PGMIGRATE_{_name}"):
        globals()[f"PGMIGRATE_{_name}"] = float(os.environ[f"BENCH_PGMIGRATE_{_name}"])
if os.environ.get("BENCH_PGMIGRATE_LOCK_RETRIES"):
    PGMIGRATE_LOCK_RETRIES = int(os.environ["BENCH_PGMIGRATE_LOCK_RETRIES"])
