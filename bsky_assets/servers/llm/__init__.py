"""An OpenAI-compatible server answering from a documented keyword heuristic."""
