"""syncd: two-way message sync between an app and messaging platforms."""

__version__ = "0.1.0"
