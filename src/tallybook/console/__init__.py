"""The support and finance console (server-rendered)."""
