"""The state schema, as numbered migrations in sql/state/ (``NNN_name.sql``).

``migrate`` is idempotent: each migration runs once, in its own transaction, and is
recorded with its checksum in ``claimsync.schema_migration`` in that same transaction, so
a half-applied migration cannot exist. Concurrent callers serialise on an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.errors import ConfigError
from claimsync.resources import sql_dir

_MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
# pg_advisory_xact_lock key for "claimsync schema migration" (any fixed 64-bit number).
_MIGRATION_LOCK = 0x636C61696D73


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_dir() / "state"
    migrations = []
    for path in sorted(directory.iterdir()):
        match = _MIGRATION_FILE.match(path.name)
        if match:
            migrations.append(Migration(int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ConfigError(f"two state migrations share a number in {directory}")
    return migrations


def migrate(engine: Engine, directory: Path | None = None) -> list[Migration]:
    """Apply the migrations not yet applied; return those applied now (empty on a second run)."""
    applied_now: list[Migration] = []
    for migration in available_migrations(directory):
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS claimsync"))
            conn.execute(
                sa.text(
                    "CREATE TABLE IF NOT EXISTS claimsync.schema_migration ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            )
            recorded = conn.execute(
                sa.text("SELECT checksum FROM claimsync.schema_migration WHERE version = :v"),
                {"v": migration.version},
            ).scalar()
            if recorded is not None:
                if recorded != migration.checksum:
                    raise ConfigError(
                        f"state migration {migration.version:03d}_{migration.name} was changed after it "
                        "was applied: add a new migration instead of editing an old one"
                    )
                continue
            conn.exec_driver_sql(migration.sql)
            conn.execute(
                sa.text("INSERT INTO claimsync.schema_migration (version, name, checksum) VALUES (:v, :n, :c)"),
                {"v": migration.version, "n": migration.name, "c": migration.checksum},
            )
            applied_now.append(migration)
    return applied_now


def applied_versions(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT to_regclass('claimsync.schema_migration')")).scalar()
        if exists is None:
            return []
        return list(conn.execute(sa.text("SELECT version FROM claimsync.schema_migration ORDER BY version")).scalars())
