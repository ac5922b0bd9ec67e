"""Entitlements domain."""
