"""The package version, in a module of its own so that emitters can stamp it without importing
the package root (``netdsl/__init__.py`` imports the API, which imports the backends)."""

__version__ = "0.1.0"
