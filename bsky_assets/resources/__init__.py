"""Dagster resources: the database, and the labelling services."""
