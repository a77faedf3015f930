"""Sensors that start runs without anyone clicking."""
