"""The tests of wtb_prefect, a package so graph modules import by one dotted path everywhere (tests, Ray workers, subprocess drivers)."""
