"""row effects without foreign keys: a commit's effects are checked by digest, not per row (issue 13)

Revision ID: 0008_row_effects_unkeyed
Revises: 0007_composed_digests
Create Date: 2026-12-02 17:15:00

Drops ``row_effects``' two foreign keys (``transformation_id`` -> ``transformations``,
``version_id`` -> ``versions``). A 1% commit on a 1M-row store writes 10,000 effects, and on
PostgreSQL each one's two key checks (a locking lookup in each parent table) were most of the
commit: the same COPY of 10,000 effects took 424 ms with the keys, 183 ms without. The effects
stay anchored as before: the transformation's params (in the chain) hold the count and sha256
of all its effects, and ``lineage verify`` recomputes it and now also names any effect whose
transformation or version does not exist, or whose version its transformation did not make.

The four indexes stay: ``row_id`` and ``parent_row_id`` serve ``trace row`` and coverage,
``version_id`` the trace's relabel lookups and the audits, ``transformation_id`` ``verify``
and coverage.

SQLite (whose connections enforce foreign keys) cannot drop a constraint in place: the table is
copied (batch mode), which drops its triggers, so the append-only guards are taken off first and
made again on the new table. PostgreSQL drops the constraints in place; the triggers stay.
"""
from typing import Sequence, Union

from alembic import op

from lineage.migrations.append_only import protect, unprotect

revision: str = '0008_row_effects_unkeyed'
down_revision: Union[str, None] = '0007_composed_digests'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

KEYS = (('fk_row_effects_transformation_id_transformations', 'transformation_id', 'transformations'),
        ('fk_row_effects_version_id_versions', 'version_id', 'versions'))


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    if not _sqlite():
        for name, _, _ in KEYS:
            op.drop_constraint(name, 'row_effects', type_='foreignkey')
        return
    unprotect('row_effects')
    with op.batch_alter_table('row_effects', schema=None, recreate='always') as batch_op:
        for name, _, _ in KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')
    protect('row_effects')


def downgrade() -> None:
    if not _sqlite():
        for name, column, table in KEYS:
            op.create_foreign_key(name, 'row_effects', table, [column], ['id'])
        return
    unprotect('row_effects')
    with op.batch_alter_table('row_effects', schema=None, recreate='always') as batch_op:
        for name, column, table in KEYS:
            batch_op.create_foreign_key(name, table, [column], ['id'])
    protect('row_effects')
