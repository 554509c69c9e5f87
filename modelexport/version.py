"""The package version, in its own module: the API stamps it without importing the root."""

__version__ = "0.1.0"
