"""The package version, in its own module so any subpackage can read it without the root."""

__version__ = "0.1.0"
