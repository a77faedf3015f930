"""The sociopolitical labeller: the openai client, a compatible local server, evaluation."""
