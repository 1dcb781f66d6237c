"""The package version, in its own module so that any module can import it without importing the package's
public API (evalsuite/__init__.py imports evaluate.py, which records the version in every results file)."""

__version__ = "0.2.0"
