"""Bare Django ``migrate``: neither pgmigrate nor its dependencies (a reference point)."""

from bench.settings_common import *  # noqa: F403
from bench.settings_common import BENCH_APPS

INSTALLED_APPS = BENCH_APPS
