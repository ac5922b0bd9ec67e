"""API keys, scopes and the caller identity every endpoint declares."""
