"""Deterministic demo data: both reference systems filled with realistic claims and planted breaks.

``generate`` fills the (already created, empty) OA and expense reference schemas with
``scale`` OA expense requests, their expense claims, the people and departments behind
them, and a known number of every reconciliation exception, and returns the
:class:`AnswerKey`: what a full reconciliation at ``as_of`` must find (claimsync.rules is
the contract). Same (scale, seed, as_of, settings) → the same rows and the same key.

Layout: ``vocab`` (names, departments, fee types), ``org`` (the company), ``scenarios``
(lifecycles and planted-break variants), ``plan`` (who files what, where the breaks are),
``chunk`` (rows, built chunk by chunk), ``load`` (COPY), ``answer`` (the key).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.config import Settings
from claimsync.db import qualified
from claimsync.demo.answer import AnswerKey, load_answer_key, write_answer_key
from claimsync.demo.chunk import EXPENSE_COLUMNS, OA_COLUMNS, build_chunk, org_tables
from claimsync.demo.load import LoadStats, SystemLoader, table_csv
from claimsync.demo.plan import Plan, build_plan
from claimsync.errors import ConfigError

__all__ = [
    "EXPENSE_COLUMNS",
    "OA_COLUMNS",
    "AnswerKey",
    "LoadStats",
    "Plan",
    "build_plan",
    "generate",
    "iter_tables",
    "load_answer_key",
    "table_csv",
    "write_answer_key",
]


def _oa_tables(settings: Settings) -> dict[str, tuple[str, tuple[str, ...]]]:
    real = {"form": settings.mapping.oa_form_table, "form_lines": settings.mapping.oa_form_lines_table}
    return {name: (real.get(name, name), columns) for name, columns in OA_COLUMNS.items()}


def _expense_tables() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {name: (name, columns) for name, columns in EXPENSE_COLUMNS.items()}


def iter_tables(plan: Plan) -> Iterator[tuple[str, str, pa.Table]]:
    """Every batch of rows of the data set as (system, logical table, rows), in load order."""
    oa, expense = org_tables(plan)
    for name, table in oa.items():
        yield "oa", name, table
    for name, table in expense.items():
        yield "expense", name, table
    for index, (lo, hi) in enumerate(plan.chunks()):
        oa, expense = build_chunk(plan, lo, hi, index)
        for name, table in oa.items():
            yield "oa", name, table
        for name, table in expense.items():
            yield "expense", name, table


def _require_empty(engine: Engine, system: str, schema: str, tables: dict[str, tuple[str, tuple[str, ...]]]) -> None:
    with engine.connect() as conn:
        for real, _ in tables.values():
            exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": qualified(conn, schema, real)}).scalar()
            if exists is None:
                raise ConfigError(
                    f"the {system} database has no table {schema}.{real}: create the reference schema first "
                    "(claimsync demo --empty)"
                )
            if conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {qualified(conn, schema, real)})")).scalar():
                raise ConfigError(f"{system} table {schema}.{real} is not empty: the demo fills empty schemas only")


def generate(
    oa_engine: Engine,
    expense_engine: Engine,
    *,
    scale: int,
    seed: int,
    as_of: datetime,
    settings: Settings,
    stats: LoadStats | None = None,
) -> AnswerKey:
    """Fill both empty reference schemas with ``scale`` OA expense requests and their claims.

    Returns the answer key for a full reconciliation at ``as_of`` (grace ``settings.grace``).
    Pass ``stats`` to collect rows, CSV bytes and loader time per table.
    """
    started = time.perf_counter()
    plan = build_plan(scale=scale, seed=seed, as_of=as_of, settings=settings)
    mapping = settings.mapping
    oa_tables, expense_tables = _oa_tables(settings), _expense_tables()
    _require_empty(oa_engine, "OA", mapping.oa_schema, oa_tables)
    _require_empty(expense_engine, "expense", mapping.expense_schema, expense_tables)
    stats = stats if stats is not None else LoadStats()
    oa = SystemLoader(oa_engine, "oa", mapping.oa_schema, oa_tables, stats=stats)
    expense = SystemLoader(
        expense_engine, "expense", mapping.expense_schema, expense_tables, serials=("flow_log",), stats=stats
    )
    with oa, expense:
        for system, name, table in iter_tables(plan):
            (oa if system == "oa" else expense).put(name, table)
    return plan.answer_key(time.perf_counter() - started)
