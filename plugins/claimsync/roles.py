"""Least-privilege grants (sql/roles/*.sql), rendered for the configured mapping.

The files use psql's variable syntax (``:"name"`` for an identifier), so a DBA can run
them with ``psql -v schema=ecology …``; :func:`render_grants` fills the same variables
with validated, quoted identifiers so claimsync can print or apply them itself.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from claimsync.config import Settings, identifier
from claimsync.resources import sql_dir

_VARIABLE = re.compile(r':"([a-z_]+)"')

DEFAULT_ROLES = {
    "oa": ("claimsync_oa_reader", "claimsync_oa_writer"),
    "expense": ("claimsync_expense_reader", "claimsync_expense_writer"),
}


def role_variables(system: str, settings: Settings, reader: str, writer: str) -> dict[str, str]:
    mapping = settings.mapping
    variables = {"reader": identifier(reader, "reader role"), "writer": identifier(writer, "writer role")}
    if system == "oa":
        variables |= {
            "schema": mapping.oa_schema,
            "form_table": mapping.oa_form_table,
            "lines_table": mapping.oa_form_lines_table,
        }
    else:
        variables["schema"] = mapping.expense_schema
    return variables


def render_grants(system: str, settings: Settings, reader: str, writer: str) -> str:
    """The grant script of ``system`` ('oa' or 'expense') with every variable quoted."""
    if system not in DEFAULT_ROLES:
        raise ValueError(f"unknown system {system!r}")
    variables = role_variables(system, settings, reader, writer)
    template = (sql_dir() / "roles" / f"{system}.sql").read_text(encoding="utf-8")

    def quoted(match: re.Match[str]) -> str:
        return '"' + variables[match.group(1)].replace('"', '""') + '"'

    return _VARIABLE.sub(quoted, template)


def apply_grants(engine: Engine, script: str) -> None:
    """Run a rendered grant script in one transaction (needs a role that owns the tables)."""
    with engine.begin() as conn:
        conn.exec_driver_sql(script)


def ensure_login_role(engine: Engine, name: str, password: str | None = None) -> None:
    """Create login role ``name`` if missing (tests and demos; in production a DBA does this)."""
    identifier(name, "role name")
    with engine.begin() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :n"), {"n": name}).scalar()
        quoted = conn.dialect.identifier_preparer.quote_identifier(name)
        if not exists:
            conn.execute(sa.text(f"CREATE ROLE {quoted} LOGIN"))
        if password is not None:
            # ALTER ROLE takes no bind parameters: quote the literal with the server's own function.
            literal = conn.execute(sa.text("SELECT quote_literal(:p)"), {"p": password}).scalar()
            conn.execute(sa.text(f"ALTER ROLE {quoted} PASSWORD {literal}"))
