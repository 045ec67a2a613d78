"""The benchmark's Django app: one table of 10,000 rows that migrations alter."""
