"""The metadata database: one SQLAlchemy engine, one MetaData all tables register on.

SQLite by default (``DATA_DIR/execbox.db``, WAL mode); any SQLAlchemy URL (Postgres) works.
Each store module declares its own tables on ``metadata``; ``create_tables`` creates them.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite drops tzinfo otherwise)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Key(sa.types.TypeDecorator):
    """An identifier or workspace column. No stored key contains NUL, which Postgres text
    cannot hold: a NUL in a looked-up key is bound as U+FFFD, so the lookup finds nothing
    (as on SQLite) instead of failing."""

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: sa.Dialect) -> str | None:
        return None if value is None else value.replace("\x00", "\ufffd")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def connect(url: str, busy_timeout_s: float = 30.0) -> Engine:
    """Open the database at ``url``. On SQLite a writer waits up to ``busy_timeout_s`` for
    another's lock, then fails (``OperationalError``, answered as 529 ``database_busy``)."""
    if url.startswith("sqlite"):
        _private_sqlite_file(sa.engine.make_url(url).database)
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": busy_timeout_s})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    return engine


def _private_sqlite_file(database: str | None) -> None:
    """Create the SQLite file (and make an existing one) readable by root only. SQLite
    gives its -wal and -shm files the database file's mode."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.chmod(database + suffix, 0o600)
        except FileNotFoundError:
            pass


def create_tables(engine: Engine) -> None:
    """Create every table registered on ``metadata`` (import the stores first), and add
    nullable columns that newer versions declared to tables an older version created."""
    metadata.create_all(engine)
    inspector = sa.inspect(engine)
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            present = {column["name"] for column in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(sa.text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
