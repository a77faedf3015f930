"""`bsky-assets`: the project's command line, one module per command group."""

from bsky_assets.cli.root import main

__all__ = ["main"]
