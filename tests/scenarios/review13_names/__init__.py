"""The ``review13_names`` scenario: tables outside ``public`` and names that need quoting
(``tests/test_review_issue13.py``); the test makes the schema ``review13``."""
