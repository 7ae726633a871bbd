"""ingest roots hold no id list: a root version adds exactly its ingest's row range (issue 13)

Revision ID: 0009_roots_hold_no_ids
Revises: 0008_row_effects_unkeyed
Create Date: 2026-12-02 22:10:00

No schema change. From this revision on, an ingest's root version stores an empty
``added_ids`` blob: its rows are its ingest's range (``ingests.first_row_id``, ``n_rows``),
held once in the ingest record, instead of that range again at 8 bytes a row (80 MB at 10M
rows). Roots written before keep their full list, and both forms verify.

The revision exists so that a lineage from before it refuses a store written after it ("newer
than this lineage knows") instead of reading an empty list as a root with no rows and
reporting the store as tampered with.
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0009_roots_hold_no_ids'
down_revision: Union[str, None] = '0008_row_effects_unkeyed'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass  # the data format changed, not the schema (see the docstring)


def downgrade() -> None:
    # A root written since cannot be given its list back (records are append-only and their
    # digests cover the blob), and an older lineage would misread it: refuse.
    roots = op.get_bind().execute(sa.text(
        "SELECT count(*) FROM versions WHERE parent_id IS NULL AND ingest_id IS NOT NULL "
        "AND n_rows > 0 AND length(added_ids) = 0")).scalar()
    if roots:
        raise RuntimeError(f"{roots} ingest root versions hold no id list (written at revision "
                           "0009 or later): a lineage before 0009 would misread them, so this "
                           "store cannot be downgraded below 0009")
