"""Settings for the ``manage.py`` children of ``tests/test_live_progress.py``: those of
``tests.subprocess_settings``, with pgmigrate's progress threshold lowered to
``$PGMIGRATE_TEST_PROGRESS_AFTER`` seconds, so that a test's index build need not last long."""

import os

from pgmigrate import live
from tests.subprocess_settings import *  # noqa: F403

live.PROGRESS_AFTER = float(os.environ["PGMIGRATE_TEST_PROGRESS_AFTER"])
