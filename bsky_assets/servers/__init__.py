"""The project's own API servers: test doubles, the offline demo, the post-sunset labeler."""
