"""signed attestations of reviews and model versions (issue 9)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 23:30:00

One table of DSSE envelopes over in-toto statements, one per signed record (snapshot, source
and model reviews, model versions); append-only like all history.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from lineage.migrations.append_only import protect, unprotect

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('attestations',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('record_table', sa.String(length=40), nullable=False),
    sa.Column('record_id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=250), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('keyid', sa.String(length=64), nullable=False),
    sa.Column('signer', sa.String(length=200), nullable=False),
    sa.Column('envelope', sa.Text(), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('record_digest', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_attestations')),
    sa.UniqueConstraint('record_table', 'record_id',
                        name='uq_attestations_record_table_record_id')
    )
    with op.batch_alter_table('attestations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attestations_digest'), ['digest'], unique=False)
    protect('attestations')


def downgrade() -> None:
    unprotect('attestations')
    op.drop_table('attestations')
