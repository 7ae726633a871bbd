"""composed content digests: a version records its digest scheme and Merkle leaves (issue 13)

Revision ID: 0007_composed_digests
Revises: 0006_external_models
Create Date: 2026-12-02 03:40:00

``versions.digest_scheme`` (NULL: the flat sha256 of scheme 1, what every version written before
this revision has; 2: the Merkle root of ``lineage.data.digests``) and ``versions.chunk_leaves``
(scheme 2's leaves: chunk id and leaf hash per chunk holding members). Existing versions are not
rewritten: both columns stay NULL for them, and NULL late columns are left out of record digests
(``chain.LATE_COLUMNS``), so their digests, and the chain that anchors them, still verify.

``ix_chunks_covering``: the chunk index (dataset, first row id, row count, ingest,
transformation, record digest) as a covering index, so listing chunks never reads a chunk row:
in SQLite the columns after the two blobs are reached only by walking their overflow pages.

PostgreSQL: the blob columns of chunks and versions are stored uncompressed (``STORAGE
EXTERNAL``; rows written from now on). pglz gained ~10% of space on digit-like chunks and cost
most of a write: a 1M-row ingest measured 3.6-3.9 s with it, 0.77-0.79 s without.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007_composed_digests'
down_revision: Union[str, None] = '0006_external_models'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


BLOBS = {'chunks': ('features', 'labels'),
         'versions': ('removed_ids', 'added_ids', 'added_labels', 'relabel_ids', 'relabel_labels',
                      'chunk_leaves')}


def _storage(kind: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in BLOBS.items():
            for column in columns:
                op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE {kind}")


def upgrade() -> None:
    # ADD COLUMN leaves the table's rows and its append-only triggers as they are.
    op.add_column('versions', sa.Column('digest_scheme', sa.Integer(), nullable=True))
    op.add_column('versions', sa.Column('chunk_leaves', sa.LargeBinary(), nullable=True))
    op.create_index('ix_chunks_covering', 'chunks', ['dataset_id', 'first_row_id', 'n_rows',
                                                     'ingest_id', 'transformation_id',
                                                     'record_digest'], unique=False)
    _storage("EXTERNAL")


def downgrade() -> None:
    _storage("EXTENDED")
    op.drop_index('ix_chunks_covering', table_name='chunks')
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of the table would drop its guards.
    op.drop_column('versions', 'chunk_leaves')
    op.drop_column('versions', 'digest_scheme')
