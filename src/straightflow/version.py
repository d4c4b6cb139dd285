"""The package version, in its own bottom-layer module so that file formats (exports) can record it."""

__version__ = "0.2.0"
