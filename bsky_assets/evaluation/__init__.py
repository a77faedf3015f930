"""Evaluation: how a labeller scores against what researchers decided by hand."""
