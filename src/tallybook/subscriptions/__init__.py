"""Subscriptions domain."""
