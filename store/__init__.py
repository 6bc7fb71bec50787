"""Message store maintenance toolkit."""

__version__ = "0.1.0"
