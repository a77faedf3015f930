"""The asset graph: landing → preprocessed_posts → classification_metadata → valid_posts → labels."""
