"""Apply real apps' migrations with plain Django and with pgmigrate, and compare
(``python -m realmig``; see realmig/README.md)."""
