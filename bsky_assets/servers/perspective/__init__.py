"""A Perspective-compatible server and its pluggable scorers."""
