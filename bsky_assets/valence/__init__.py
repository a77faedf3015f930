"""The valence labeller: VADER's sentiment of each post, computed here, no key, no server."""
