"""World models: each exposes its training loss as a function of a batch."""
