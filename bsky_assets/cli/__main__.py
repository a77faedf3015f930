"""`python -m bsky_assets.cli`: how the bench and the tests start a local server by hand."""

from bsky_assets.cli.root import main

main()
