"""Invoicing domain."""
