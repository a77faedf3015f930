"""The Perspective successor: distilled from a group's own Perspective history, served by the
project's Perspective-compatible server after Google's shutdown (2026-12-31)."""
