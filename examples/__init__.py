"""Example projects of wtb_prefect."""
