"""refuse REPLACE and upserts on every history table (issue 9)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:45:00

SQLite's REPLACE deletes the row it clashes with without firing DELETE triggers, so with every
UPDATE and DELETE guard in place ``REPLACE INTO snapshot_reviews ...`` could still turn a
revocation into a pass. Each history table gets a BEFORE INSERT guard that refuses an insert
whose primary key or any unique key already exists (``append_only.refuse_replace``; stores
migrated with a newer ``protect`` have it already, and it is made again from the live keys).
PostgreSQL needs nothing: ``ON CONFLICT DO UPDATE`` and ``MERGE`` meet its row triggers.
"""
from typing import Sequence, Union

from alembic import op

from lineage.migrations.append_only import refuse_replace

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

HISTORY = ('datasets', 'events', 'sources', 'source_reviews', 'ingests', 'transformations',
           'chunks', 'versions', 'row_effects', 'policies', 'snapshots', 'snapshot_reviews',
           'model_versions', 'artifact_chunks', 'model_reviews', 'attestations')


def upgrade() -> None:
    for table in HISTORY:
        refuse_replace(table)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table in HISTORY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
