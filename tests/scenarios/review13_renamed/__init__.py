"""The ``review13_renamed`` scenario: a table renamed, then changed under its new name, in one
migration (``tests/test_review_issue13.py``)."""
