"""Django's own test suite with and without pgmigrate, compared test by test.

``python -m django_suite --django 5.2`` (``make django-suite DJANGO=5.2``): see README.md.
"""
