"""Alembic environment. lineage passes its own connection (``config.attributes['connection']``)
so migrations run inside lineage's locked transaction; the ``alembic`` command line (from the
repo, with alembic.ini) connects to LINEAGE_DB or the ini's URL instead."""

import os

from alembic import context

from lineage.store.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
elif context.is_offline_mode():
    context.configure(url=os.environ.get("LINEAGE_DB") or config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    # lineage's own engine: on SQLite it issues BEGIN itself, so the DDL runs inside the one
    # transaction (pysqlite's default runs it outside, so a downgrade refused halfway kept
    # the steps before the refusal).
    from lineage.store.engine import open_for_upgrade

    url = os.environ.get("LINEAGE_DB") or config.get_main_option("sqlalchemy.url")
    engine = open_for_upgrade(url).engine
    try:
        with engine.connect().execution_options(lineage_write=True) as conn, conn.begin():
            _run(conn)
    finally:
        engine.dispose()
