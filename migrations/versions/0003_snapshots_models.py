"""snapshots, reviews, policy and model versions (issue 4)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 16:05:00
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa

from lineage.migrations.append_only import protect, unprotect  # noqa: F401

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
