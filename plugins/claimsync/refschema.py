"""The two reference systems' schemas (sql/oa/schema.sql, sql/expense/schema.sql)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.resources import sql_dir

OA_SCHEMA = "ecology"
EXPENSE_SCHEMA = "ekb"


def create_reference_schema(engine: Engine, system: str, *, recreate: bool = False) -> None:
    """Create the reference schema of ``system`` ('oa' or 'expense'), empty when ``recreate``."""
    schema = {"oa": OA_SCHEMA, "expense": EXPENSE_SCHEMA}[system]
    ddl = (sql_dir() / system / "schema.sql").read_text(encoding="utf-8")
    with engine.begin() as conn:
        if recreate:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.exec_driver_sql(ddl)
