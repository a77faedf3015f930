"""Perspective: the google-api-python-client batch client and a compatible server."""
