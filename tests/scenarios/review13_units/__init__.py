"""The ``review13_units`` scenario: operations that pgmigrate runs in one transaction
(``tests/test_review_issue13.py``)."""
