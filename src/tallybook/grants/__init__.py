"""Grants domain."""
