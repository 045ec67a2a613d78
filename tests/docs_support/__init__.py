"""Helpers of ``tests/test_docs.py``: reading the Markdown docs and running their examples."""
