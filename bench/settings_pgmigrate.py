"""``migrate`` with pgmigrate installed (its default settings unless the bench sets one)."""

import os

from bench.settings_common import *  # noqa: F403
from bench.settings_common import BENCH_APPS

INSTALLED_APPS = ["pgactivity", "pglock", "pgmigrate", *BENCH_APPS]

if "BENCH_PGMIGRATE_ACTION" in os.environ:  # "" means None (do nothing)
    PGMIGRATE_BLOCKING_ACTION = os.environ["BENCH_PGMIGRATE_ACTION"] or None

if os.environ.get("BENCH_TRACE_FILE"):  # --scenario profile: timestamp every statement
    INSTALLED_APPS.append("bench.tracer")
