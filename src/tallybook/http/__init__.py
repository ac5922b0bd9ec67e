"""The HTTP edge shared by every domain's endpoints: auth, unit of work, idempotency, errors."""
