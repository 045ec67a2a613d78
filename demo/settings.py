"""Settings of the demo: the development settings plus the demo app."""

from settings import *  # noqa: F403
from settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "demo"]
