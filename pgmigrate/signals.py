"""Django signals sent by pgmigrate, one per event (see ``pgmigrate.events``).

Receivers get ``sender`` (the command class) and the event's fields as keyword arguments,
e.g. ``migration``, ``database``, ``backend_pid``, ``blocker_pid``.
"""

from django.dispatch import Signal

migration_started = Signal()
migration_finished = Signal()
blocked = Signal()
blocker_shown = Signal()
blocker_ended = Signal()
action_failed = Signal()
lock_timeout = Signal()
retry = Signal()
resumed = Signal()
stepped_aside = Signal()
waiting_aside = Signal()
stepped_back = Signal()
statement_progress = Signal()
