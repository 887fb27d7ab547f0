"""Shared by the sync tests: demo data generated once, cloned per test; snapshots of both systems.

Generating demo data takes seconds; ``CREATE DATABASE … TEMPLATE`` copies it in a fraction
of that, so every test (and every crash trial) starts from the same rows.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from claimsync.config import Settings
from claimsync.db import create_engine
from claimsync.pgserver import PgServer

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
_counter = itertools.count()

# Columns a sync sets from the clock (the change cursor and the log time): left out of snapshots.
CLOCK_COLUMNS = {("ekb", "department", "update_time"), ("ekb", "staff", "update_time"),
                 ("ekb", "flow", "update_time"), ("ekb", "flow_log", "time"), ("ekb", "flow_log", "id")}  # fmt: skip


@dataclass
class Template:
    """Template databases holding generated demo data, and the answer key."""

    server: PgServer
    oa: str
    expense: str
    key: Any  # claimsync.demo.AnswerKey
    scale: int


def make_template(server: PgServer, *, scale: int, seed: int = 20260331) -> Template:
    from claimsync.demo import generate
    from claimsync.refschema import create_reference_schema

    stem = f"cs_tpl{os.getpid()}_{next(_counter)}"
    oa_url = server.create_database(f"{stem}_oa", recreate=True)
    expense_url = server.create_database(f"{stem}_expense", recreate=True)
    oa, expense = create_engine(oa_url), create_engine(expense_url)
    try:
        create_reference_schema(oa, "oa")
        create_reference_schema(expense, "expense")
        key = generate(oa, expense, scale=scale, seed=seed, as_of=AS_OF, settings=Settings())
    finally:
        oa.dispose()
        expense.dispose()
    return Template(server, f"{stem}_oa", f"{stem}_expense", key, scale)


def drop_template(template: Template) -> None:
    template.server.drop_database(template.oa)
    template.server.drop_database(template.expense)


def _admin(server: PgServer) -> sa.Engine:
    return create_engine(server.admin_url, "admin", isolation_level="AUTOCOMMIT")


@dataclass
class Clone:
    """Fresh OA, expense and state databases: the template's data and an empty state DB."""

    server: PgServer
    names: dict[str, str]
    settings: Settings

    def engine(self, system: str) -> sa.Engine:
        return create_engine(getattr(self.settings, f"{system}_url"), system)

    def env(self) -> dict[str, str]:
        """Environment for a `claimsync` subprocess pointed at these databases."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAIMSYNC_")}
        env.update(
            CLAIMSYNC_OA_URL=str(self.settings.oa_url),
            CLAIMSYNC_EXPENSE_URL=str(self.settings.expense_url),
            CLAIMSYNC_STATE_URL=str(self.settings.state_url),
        )
        return env

    def drop(self) -> None:
        for name in self.names.values():
            self.server.drop_database(name)


def clone(template: Template, **settings: Any) -> Clone:
    stem = f"cs_cl{os.getpid()}_{next(_counter)}"
    names = {"oa": f"{stem}_oa", "expense": f"{stem}_expense", "state": f"{stem}_state"}
    admin = _admin(template.server)
    try:
        with admin.connect() as conn:
            for system, source in (("oa", template.oa), ("expense", template.expense)):
                conn.execute(sa.text(f'CREATE DATABASE "{names[system]}" TEMPLATE "{source}"'))
            conn.execute(sa.text(f"CREATE DATABASE \"{names['state']}\" TEMPLATE template0 ENCODING 'UTF8'"))
    finally:
        admin.dispose()
    urls = {system: template.server.url(name) for system, name in names.items()}
    return Clone(
        template.server,
        names,
        Settings(oa_url=urls["oa"], expense_url=urls["expense"], state_url=urls["state"], **settings),
    )


@dataclass(frozen=True)
class Snapshot:
    """A digest per table of both systems (clock columns left out) and the row counts."""

    digests: dict[str, str]
    counts: dict[str, int]


def snapshot(c: Clone, *, clock: bool = False, runs: bool = True) -> Snapshot:
    """What both systems hold; ``clock=True`` includes the columns a sync fills from the clock,
    ``runs=False`` leaves out flow_log comments (they name the run that wrote them)."""
    digests: dict[str, str] = {}
    counts: dict[str, int] = {}
    for system, schema in (("oa", "ecology"), ("expense", "ekb")):
        engine = c.engine(system)
        try:
            with engine.connect() as conn:
                tables = conn.execute(
                    sa.text(
                        "SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)"
                        " FROM information_schema.columns WHERE table_schema = :s GROUP BY table_name"
                        " ORDER BY table_name"
                    ),
                    {"s": schema},
                ).all()
                for table, columns in tables:
                    kept = [
                        col
                        for col in columns
                        if (clock or (schema, table, col) not in CLOCK_COLUMNS)
                        and (runs or (table, col) != ("flow_log", "comment"))
                    ]
                    select = ", ".join(f'"{col}"::text' for col in kept)
                    rows = conn.execute(sa.text(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY {select}')).all()
                    digests[f"{system}.{table}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
                    counts[f"{system}.{table}"] = len(rows)
        finally:
            engine.dispose()
    return Snapshot(digests, counts)


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def expected_after_sync(key: Any) -> set[tuple[str, str]]:
    """The answer key's exceptions minus those one sync fixes on its own."""
    fixed = {(code, k) for code, keys in key.fixed_by_sync.items() for k in keys}
    return set(key.all_keys()) - fixed


def reconciled(c: Clone, as_of: datetime = AS_OF) -> set[tuple[str, str]]:
    """(code, business key) of every exception a full reconciliation finds now."""
    from claimsync.extract import extract_sides
    from claimsync.reconcile import reconcile

    oa, expense = c.engine("oa"), c.engine("expense")
    try:
        result = reconcile(extract_sides(oa, expense, c.settings), as_of=as_of, settings=c.settings)
    finally:
        oa.dispose()
        expense.dispose()
    return set(zip(result.exceptions["code"].tolist(), result.exceptions["business_key"].tolist(), strict=True))


def audit(c: Clone) -> list[Any]:
    """Every planned write of every run: (run_id, target, table, record_key, operation, status)."""
    engine = c.engine("state")
    try:
        return rows(
            engine,
            "SELECT run_id, target, table_name, record_key, operation, status FROM claimsync.planned_write ORDER BY id",
        )
    finally:
        engine.dispose()


def iter_statuses(audit_rows: list[Any], status: str) -> Iterator[tuple[str, str, str]]:
    for row in audit_rows:
        if row.status == status:
            yield (row.target, row.table_name, row.record_key)
