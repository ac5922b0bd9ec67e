"""Reconciliation domain."""
