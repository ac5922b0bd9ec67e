"""Reliable background work primitives: the transactional outbox and resumable job runs."""
