"""The real services wtb_prefect starts or joins: a Prefect server and a Ray cluster."""
