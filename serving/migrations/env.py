"""Alembic environment for the serving store.

Run by :func:`serving.store.migrate`, which passes an open connection in ``config.attributes``; with no
connection (the ``alembic`` command line), the URL comes from ``T2S_SERVE_STORE_URL`` via the settings.
"""

from __future__ import annotations

from alembic import context

from serving.store import make_engine, metadata

connection = context.config.attributes.get("connection")


def _run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=conn.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    from t2s.settings import get_settings

    engine = make_engine(get_settings().serve_store_url)
    with engine.connect() as conn:
        _run(conn)
        conn.commit()
