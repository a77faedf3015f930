"""The posts domain: landing batches in, the day's posts and which of them may be labelled."""
