"""Plain Django ``migrate``: the same project without pgmigrate in INSTALLED_APPS (the
no-tool baseline). pgmigrate's dependencies pgactivity and pglock stay installed."""

from bench.settings_common import *  # noqa: F403
from bench.settings_common import BENCH_APPS

INSTALLED_APPS = ["pgactivity", "pglock", *BENCH_APPS]
