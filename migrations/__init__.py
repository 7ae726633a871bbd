"""Alembic migrations: the only place the schema is created (shipped as lineage.migrations)."""
