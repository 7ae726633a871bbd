"""row-level lineage for transformations (issue 3)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:05:00

``row_effects``: the row-level effect of every transformation (removed, added, relabelled
old->new, modified parent->child), indexed by row, parent row and version so ``trace row`` and
``version diff`` answer from records.
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from lineage.migrations.append_only import protect, unprotect  # noqa: F401

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

HISTORY = ('row_effects',)


def upgrade() -> None:
    op.create_table('row_effects',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('transformation_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('row_id', sa.BigInteger(), nullable=False),
    sa.Column('effect', sa.String(length=12), nullable=False),
    sa.Column('old_label', sa.BigInteger(), nullable=True),
    sa.Column('new_label', sa.BigInteger(), nullable=True),
    sa.Column('parent_row_id', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['transformation_id'], ['transformations.id'], name=op.f('fk_row_effects_transformation_id_transformations')),
    sa.ForeignKeyConstraint(['version_id'], ['versions.id'], name=op.f('fk_row_effects_version_id_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_row_effects'))
    )
    with op.batch_alter_table('row_effects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_row_effects_parent_row_id'), ['parent_row_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_row_effects_row_id'), ['row_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_row_effects_transformation_id'), ['transformation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_row_effects_version_id'), ['version_id'], unique=False)
    for table in HISTORY:
        protect(table)


def downgrade() -> None:
    for table in HISTORY:
        unprotect(table)
    with op.batch_alter_table('row_effects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_row_effects_version_id'))
        batch_op.drop_index(batch_op.f('ix_row_effects_transformation_id'))
        batch_op.drop_index(batch_op.f('ix_row_effects_row_id'))
        batch_op.drop_index(batch_op.f('ix_row_effects_parent_row_id'))
    op.drop_table('row_effects')
