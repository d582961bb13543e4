"""Alembic migrations of the metadata store (run by ``MetadataStore.migrate()``)."""
