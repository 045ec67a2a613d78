"""The ``review13`` scenario: Django migrations whose lock plan the review of issue 13 checks
(``tests/test_review_issue13.py``)."""
