"""Alembic revisions: 0001 the schema of the first release (create_all era), 0002 the full data model."""
