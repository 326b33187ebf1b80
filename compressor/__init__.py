"""compressor: recipe-driven compression and export of causal LMs."""

__version__ = "0.1.0"
