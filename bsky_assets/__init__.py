"""bsky_assets: a Dagster asset graph that labels Bluesky posts for social-science research."""
