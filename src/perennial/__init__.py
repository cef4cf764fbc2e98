"""perennial: keep a transformer text classifier current without forgetting."""

__version__ = "0.1.0"
