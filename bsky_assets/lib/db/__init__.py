"""Postgres access: the embedded default server, connection URLs, and the table client."""
