"""The intergroup labeller: does a post describe relations between social groups (an LLM task)."""
