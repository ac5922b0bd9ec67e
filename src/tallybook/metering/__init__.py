"""Metering domain."""
