"""snapshots, reviews, policy and model versions (issue 4)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:05:00

Policy versions, frozen snapshots with their manifests, snapshot reviews (with gate reports),
model versions with their stored artifacts, and model release reviews; all append-only.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from lineage.migrations.append_only import protect, unprotect  # noqa: F401

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ('policies', 'snapshots', 'snapshot_reviews', 'model_versions', 'artifact_chunks',
          'model_reviews')


def _who() -> list:
    return [sa.Column('actor', sa.String(length=200), nullable=False),
            sa.Column('created_at', sa.DateTime(), nullable=False),
            sa.Column('record_digest', sa.String(length=64), nullable=False)]


def upgrade() -> None:
    op.create_table('policies',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('settings', sa.Text(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    *_who(),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_policies'))
    )
    op.create_table('snapshots',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('n_rows', sa.Integer(), nullable=False),
    sa.Column('content_digest', sa.String(length=64), nullable=False),
    sa.Column('manifest_digest', sa.String(length=64), nullable=False),
    sa.Column('row_runs', sa.LargeBinary(), nullable=False),
    sa.Column('override_ids', sa.LargeBinary(), nullable=False),
    sa.Column('override_labels', sa.LargeBinary(), nullable=False),
    sa.Column('chunk_digests', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_snapshots_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_snapshots_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_snapshots')),
    sa.UniqueConstraint('name', name=op.f('uq_snapshots_name'))
    )
    with op.batch_alter_table('snapshots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshots_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_snapshots_version_id'), ['version_id'], unique=False)

    op.create_table('snapshot_reviews',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('content_digest', sa.String(length=64), nullable=False),
    sa.Column('report', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_snapshot_reviews_policy_id_policies')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshots.id'], name=op.f('fk_snapshot_reviews_snapshot_id_snapshots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_snapshot_reviews'))
    )
    with op.batch_alter_table('snapshot_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_snapshot_reviews_snapshot_id'), ['snapshot_id'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('model', sa.String(length=200), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('snapshot_id', sa.Integer(), nullable=False),
    sa.Column('snapshot_digest', sa.String(length=64), nullable=False),
    sa.Column('estimator', sa.String(length=40), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('code_identity', sa.String(length=200), nullable=False),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=False),
    sa.Column('artifact_size', sa.BigInteger(), nullable=False),
    sa.Column('metrics', sa.Text(), nullable=False),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    *_who(),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_model_versions_policy_id_policies')),
    sa.ForeignKeyConstraint(['snapshot_id'], ['snapshots.id'], name=op.f('fk_model_versions_snapshot_id_snapshots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('model', 'number', name='uq_model_versions_model_number')
    )
    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_versions_model'), ['model'], unique=False)
        batch_op.create_index(batch_op.f('ix_model_versions_snapshot_id'), ['snapshot_id'], unique=False)

    op.create_table('artifact_chunks',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('record_digest', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_artifact_chunks_model_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_artifact_chunks'))
    )
    with op.batch_alter_table('artifact_chunks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_artifact_chunks_model_version_id'), ['model_version_id'], unique=False)

    op.create_table('model_reviews',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('model_version_id', sa.Integer(), nullable=False),
    sa.Column('decision', sa.String(length=10), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('policy_id', sa.Integer(), nullable=True),
    sa.Column('report', sa.Text(), nullable=False),
    *_who(),
    sa.ForeignKeyConstraint(['model_version_id'], ['model_versions.id'], name=op.f('fk_model_reviews_model_version_id_model_versions')),
    sa.ForeignKeyConstraint(['policy_id'], ['policies.id'], name=op.f('fk_model_reviews_policy_id_policies')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_reviews'))
    )
    with op.batch_alter_table('model_reviews', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_model_reviews_model_version_id'), ['model_version_id'], unique=False)

    for table in TABLES:
        protect(table)


def downgrade() -> None:
    for table in TABLES:
        unprotect(table)
    for table in reversed(TABLES):
        op.drop_table(table)
