"""The one source of truth for admmgt's version (read by the build and the installer)."""

__version__ = "0.4.0"
