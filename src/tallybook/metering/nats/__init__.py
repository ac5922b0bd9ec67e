"""The scale-out path: ingestion nodes publish events to NATS JetStream; ``tallybook worker
metering`` consumers write them to the database in batches, with the same exact dedup, and
acknowledge only after the commit. The database stays the only point of truth."""
