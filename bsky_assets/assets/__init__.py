"""The asset graph: landing → preprocessed → metadata → valid posts → labels."""
