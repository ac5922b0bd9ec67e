"""tallybook: usage-based billing whose numbers are always right."""

__version__ = "0.1.0"
