"""Database plumbing shared by every adapter: engines, reachability, COPY in and out.

The engine speaks PostgreSQL through psycopg2 here; other databases come in through
their own adapters (DESIGN.md, "Where this is going").
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from claimsync.errors import ConfigError


def normalize_url(url: str, what: str = "database") -> URL:
    """Parse a SQLAlchemy URL and pin PostgreSQL URLs to the psycopg2 driver (COPY support)."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    except ArgumentError:
        raise ConfigError(f"the {what} URL is not a SQLAlchemy URL such as postgresql://user@host/db") from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed


def safe_url(url: str | URL) -> str:
    """The URL with its password hidden: the only form claimsync ever prints or logs."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparseable URL>"
    return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)


def create_engine(url: str, what: str = "database", **kwargs: Any) -> Engine:
    """An Engine for ``url``; a bad URL stops with one line (ConfigError)."""
    parsed = normalize_url(url, what)
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
    except (NoSuchModuleError, ArgumentError) as exc:
        raise ConfigError(f"the {what} URL {safe_url(parsed)} is not usable: {exc}") from None


def check_reachable(engine: Engine, what: str) -> None:
    """Connect once; an unreachable server or a refused login is one clear line, not a traceback."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc).splitlines()[0]
        raise ConfigError(f"cannot connect to the {what} database at {safe_url(engine.url)}: {reason}") from None


def database_errors(engine: Engine) -> tuple[type[Exception], ...]:
    """What a statement on ``engine`` raises: SQLAlchemy's DBAPIError, or the driver's own Error (raw cursors)."""
    return (DBAPIError, engine.dialect.loaded_dbapi.Error)


def quote_ident(conn: Connection, name: str) -> str:
    """Quote one identifier the way the connected dialect does."""
    return conn.dialect.identifier_preparer.quote_identifier(name)


def qualified(conn: Connection, schema: str, table: str) -> str:
    return f"{quote_ident(conn, schema)}.{quote_ident(conn, table)}"


@contextmanager
def raw_cursor(conn: Connection) -> Iterator[Any]:
    """The DB-API cursor under a SQLAlchemy connection, inside its transaction."""
    dbapi_conn = conn.connection.dbapi_connection
    assert dbapi_conn is not None
    cursor = dbapi_conn.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def copy_out(conn: Connection, query: str, params: dict[str, Any] | None = None) -> bytes:
    """Stream ``query`` out with ``COPY (…) TO STDOUT`` as CSV with a header; values are bound server-side."""
    with raw_cursor(conn) as cursor:
        bound = cursor.mogrify(query, params or {}).decode()
        buffer = io.BytesIO()
        cursor.copy_expert(f"COPY ({bound}) TO STDOUT WITH (FORMAT csv, HEADER true)", buffer)
        return buffer.getvalue()


def copy_in(conn: Connection, schema: str, table: str, columns: Sequence[str], csv_data: io.IOBase) -> None:
    """Bulk-load CSV (no header, NULL as empty unquoted field) into ``schema.table(columns)``."""
    cols = ", ".join(quote_ident(conn, c) for c in columns)
    with raw_cursor(conn) as cursor:
        cursor.copy_expert(f"COPY {qualified(conn, schema, table)} ({cols}) FROM STDIN WITH (FORMAT csv)", csv_data)
