"""Customers and their external ids."""
