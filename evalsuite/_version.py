"""The package version, in its own module so that any module can import it without importing the package's
public API (every file evalsuite writes records it)."""

__version__ = "0.4.0"
