"""external models: import, isolated evaluation, signed review (issue 12)

Revision ID: 0006_external_models
Revises: 0005
Create Date: 2026-12-02 03:30:00

External model files (skops or ONNX) with their digest, format, size, source and declared
input, stored in 1 MiB pieces; their evaluations on the policy's evaluation snapshot; and the
signed reviews (approve, reject, revoke, release) that let them out of quarantine. All
append-only, with the same guards as every other history table.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from lineage.migrations.append_only import protect, unprotect

revision: str = '0006_external_models'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('external_models', 'external_model_chunks', 'external_evaluations', 'external_reviews')


def _who() -> list:
    return [sa.Column('actor', sa.String(length=200), nullable=False),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('record_digest', sa.String(length=64), nullable=False)]


def upgrade() -> None:
    op.create_table('external_models',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.Column('format', sa.String(length=10), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_size', sa.BigInteger(), nullable=False),
    sa.Column('input_schema', sa.Text(), nullable=False),
    sa.Column('trusted_types', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['source_id'], ['sources.id'], name=op.f('fk_external_models_source_id_sources')),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_external_models_dataset_id_datasets')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_models')),
    sa.UniqueConstraint('model', 'number', name='uq_external_models_model_number')
    )
    with op.batch_alter_table('external_models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_models_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_external_models_source_id'), ['source_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_external_models_dataset_id'), ['dataset_id'], unique=False)

    op.create_table('external_model_chunks',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('external_model_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('record_digest', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['external_model_id'], ['external_models.id'], name=op.f('fk_external_model_chunks_external_model_id_external_models')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_model_chunks'))
    )
    with op.batch_alter_table('external_model_chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_model_chunks_external_model_id'), ['external_model_id'], unique=False)

    op.create_table('external_evaluations',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('external_model_id', sa.Integer(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_digest', sa.String(length=64), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('report', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['external_model_id'], ['external_models.id'], name=op.f('fk_external_evaluations_external_model_id_external_models')),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_external_evaluations_policy_id_policies')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshots.id'], name=op.f('fk_external_evaluations_snapshot_id_snapshots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_evaluations'))
    )
    with op.batch_alter_table('external_evaluations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_evaluations_external_model_id'), ['external_model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_external_evaluations_snapshot_id'), ['snapshot_id'], unique=False)

    op.create_table('external_reviews',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('external_model_id', sa.Integer(), nullable=False),
    sa.Column('evaluation_id', sa.Integer(), nullable=True),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('report', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['external_model_id'], ['external_models.id'], name=op.f('fk_external_reviews_external_model_id_external_models')),
    sa.ForeignKeyConstraint(['evaluation_id'], ['external_evaluations.id'], name=op.f('fk_external_reviews_evaluation_id_external_evaluations')),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_external_reviews_policy_id_policies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_external_reviews'))
    )
    with op.batch_alter_table('external_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_external_reviews_external_model_id'), ['external_model_id'], unique=False)

    for table in TABLES:
        protect(table)


def downgrade() -> None:
    for table in TABLES:
        unprotect(table)
    for table in reversed(TABLES):
        op.drop_table(table)
