"""The shared library below every domain: the database, the labelling engine, paced calls.

Nothing here imports a domain (posts, perspective, llm tasks, successor, evaluation): domains
build on it, never the other way round (bsky_assets_tests/test_architecture.py checks it)."""
