"""The labelling engine: what every label asset does, written once."""
