"""Database-side append-only guards, created by the migrations for every history table."""

import sqlalchemy as sa
from alembic import op

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION lineage_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'lineage: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""


def protect(table: str) -> None:
    """Make ``table`` refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL), and, on SQLite,
    REPLACE and upserts (``refuse_replace``). Call it once the table's keys are all created."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION lineage_append_only()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION lineage_append_only()")
    else:
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                       f"BEGIN SELECT RAISE(ABORT, 'lineage: {table} is append-only "
                       f"({verb} refused)'); END")
    refuse_replace(table)


def unique_keys(table: str) -> list[tuple[str, ...]]:
    """The table's primary key and every unique constraint or unique index, as read from the
    live schema."""
    inspector = sa.inspect(op.get_bind())
    keys = [tuple(inspector.get_pk_constraint(table)["constrained_columns"])]
    keys += [tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)]
    keys += [tuple(i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]]
    return [k for k in dict.fromkeys(keys) if k]


def refuse_replace(table: str) -> None:
    """SQLite: refuse an INSERT whose primary key or any unique key already exists.

    SQLite's REPLACE (``INSERT OR REPLACE``, ``REPLACE INTO``) deletes the clashing row without
    firing DELETE triggers, so the UPDATE and DELETE guards alone let it rewrite history; an
    upsert's DO UPDATE would meet the UPDATE guard, but this refuses it first. The guard is made
    again (dropped if there) from the keys as they are now, so a migration that adds a unique key
    to a protected table calls this once more. PostgreSQL has no REPLACE, and its
    ``ON CONFLICT DO UPDATE`` and ``MERGE`` fire the UPDATE and DELETE row triggers: nothing to
    add there."""
    if op.get_bind().dialect.name == "postgresql":
        return
    clash = " OR ".join("(" + " AND ".join(f"{c} = NEW.{c}" for c in key) + ")"
                        for key in unique_keys(table))
    op.execute(f"DROP TRIGGER IF EXISTS {table}_no_replace")
    op.execute(f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
               f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {clash}) "
               f"BEGIN SELECT RAISE(ABORT, 'lineage: {table} is append-only (REPLACE refused)'); END")


def unprotect(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    else:
        for verb in ("update", "delete", "replace"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")
