"""row-level lineage for transformations (issue 3: filled in by the versions work)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:05:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from lineage.migrations.append_only import protect, unprotect  # noqa: F401

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
