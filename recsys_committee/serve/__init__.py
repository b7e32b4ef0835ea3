"""Serving the distilled student: a self-contained TorchScript artifact (``export``) and its loader."""
