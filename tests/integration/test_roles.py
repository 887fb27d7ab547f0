"""Least-privilege roles: every forbidden write is denied by PostgreSQL itself."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from claimsync.cli import main
from claimsync.config import Settings
from claimsync.db import create_engine
from claimsync.refschema import create_reference_schema
from claimsync.roles import apply_grants, ensure_login_role, render_grants
from tests.conftest import Databases

ALLOWED, DENIED = True, False


def _as_role(url: str, role: str) -> sa.Engine:
    return create_engine(make_url(url).set(username=role, password=None).render_as_string(hide_password=False))


def _attempt(engine: sa.Engine, statement: str) -> bool:
    """True when the statement is allowed; a permission error means denied. Nothing is kept."""
    with engine.connect() as conn:
        try:
            conn.execute(sa.text(statement))
        except sa.exc.ProgrammingError as exc:
            if "permission denied" not in str(exc.orig):
                raise
            return DENIED
        finally:
            conn.rollback()
    return ALLOWED


@pytest.fixture
def roles(databases: Databases) -> Iterator[dict[str, str]]:
    suffix = f"{os.getpid()}"
    names = {
        "oa_reader": f"cs_oa_r_{suffix}",
        "oa_writer": f"cs_oa_w_{suffix}",
        "expense_reader": f"cs_ex_r_{suffix}",
        "expense_writer": f"cs_ex_w_{suffix}",
    }
    admin = {"oa": databases.engine("oa"), "expense": databases.engine("expense")}
    settings = Settings()
    for system in ("oa", "expense"):
        create_reference_schema(admin[system], system)
        for name in (names[f"{system}_reader"], names[f"{system}_writer"]):
            ensure_login_role(admin[system], name)
        script = render_grants(system, settings, names[f"{system}_reader"], names[f"{system}_writer"])
        apply_grants(admin[system], script)
    with admin["oa"].begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ecology.formtable_main_38 (id, requestid, sqr, sqbm, bxje, bz)"
                " VALUES (1, 10, 1, 1, 100, 'CNY');"
                "INSERT INTO ecology.workflow_requestbase (requestid, workflowid, requestmark, requestname, creater,"
                " createdate, createtime, currentnodetype, lastoperatedate, lastoperatetime)"
                " VALUES (10, 38, 'FYBX-1', 't', 1, '2026-03-01', '09:00:00', '3', '2026-03-01', '09:00:00')"
            )
        )
    with admin["expense"].begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ekb.flow (id, code, title, submitter_id, sum_amount, pay_money, state, create_time)"
                " VALUES ('f1', 'B26000001', 't', 's1', 100, 100, 'approving', now())"
            )
        )
    yield names
    for engine in admin.values():
        with engine.begin() as conn:
            for name in names.values():
                conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
        engine.dispose()
    with admin["oa"].begin() as conn:
        for name in names.values():
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{name}"'))


def test_oa_reader_reads_everything_and_writes_nothing(databases: Databases, roles: dict[str, str]) -> None:
    reader = _as_role(databases.oa_url, roles["oa_reader"])
    for table in ("hrmdepartment", "hrmresource", "workflow_requestbase", "workflow_requestlog",
                  "formtable_main_38", "formtable_main_38_dt1"):  # fmt: skip
        assert _attempt(reader, f"SELECT * FROM ecology.{table}") is ALLOWED
    assert _attempt(reader, "UPDATE ecology.formtable_main_38 SET fkzt = '已支付'") is DENIED
    assert _attempt(reader, "DELETE FROM ecology.workflow_requestbase") is DENIED
    assert _attempt(reader, "CREATE TABLE ecology.x (id int)") is DENIED


def test_oa_writer_changes_only_the_columns_claimsync_owns(databases: Databases, roles: dict[str, str]) -> None:
    writer = _as_role(databases.oa_url, roles["oa_writer"])
    compare_and_set = (
        "UPDATE ecology.formtable_main_38 SET fkzt = '已支付', fkrq = '2026-03-02', pzh = 'V1', bxdh = 'B26000001'"
        " WHERE requestid = 10 AND (fkzt, fkrq, pzh, bxdh) IS NOT DISTINCT FROM (NULL, NULL, NULL, NULL)"
    )
    assert _attempt(writer, compare_and_set) is ALLOWED
    assert _attempt(writer, "UPDATE ecology.formtable_main_38 SET bxje = 1") is DENIED
    assert _attempt(writer, "UPDATE ecology.formtable_main_38 SET sqr = 2") is DENIED
    assert _attempt(writer, "DELETE FROM ecology.formtable_main_38") is DENIED
    assert (
        _attempt(writer, "INSERT INTO ecology.formtable_main_38 (id, requestid, sqr, sqbm, bxje) VALUES (2,2,1,1,1)")
        is DENIED
    )
    assert _attempt(writer, "UPDATE ecology.workflow_requestbase SET currentnodetype = '3'") is DENIED
    assert _attempt(writer, "SELECT * FROM ecology.hrmresource") is DENIED  # no personal data for the writer
    assert _attempt(writer, "UPDATE ecology.hrmresource SET status = 5") is DENIED


def test_expense_roles(databases: Databases, roles: dict[str, str]) -> None:
    reader = _as_role(databases.expense_url, roles["expense_reader"])
    assert _attempt(reader, "SELECT * FROM ekb.payment") is ALLOWED
    assert _attempt(reader, "UPDATE ekb.flow SET state = 'paid'") is DENIED
    assert _attempt(reader, "INSERT INTO ekb.flow_log (flow_id, action, time) VALUES ('f1', 'x', now())") is DENIED

    writer = _as_role(databases.expense_url, roles["expense_writer"])
    approve = (
        "UPDATE ekb.flow SET state = 'paying', approve_time = now(), update_time = now()"
        " WHERE code = 'B26000001' AND state IS NOT DISTINCT FROM 'approving'"
    )
    assert _attempt(writer, approve) is ALLOWED
    assert _attempt(writer, "INSERT INTO ekb.flow (id, code, title, submitter_id, sum_amount, pay_money, state,"
                            " create_time, oa_request_id) VALUES ('f2', 'B26000002', 't', 's1', 1, 1, 'approving',"
                            " now(), 11) ON CONFLICT DO NOTHING") is ALLOWED  # fmt: skip
    assert _attempt(writer, "INSERT INTO ekb.flow_log (flow_id, action, time, comment) VALUES ('f1',"
                            " 'claimsync.sync', now(), 'run r1')") is ALLOWED  # fmt: skip
    assert _attempt(writer, "UPDATE ekb.staff SET active = false") is ALLOWED
    assert _attempt(writer, "UPDATE ekb.flow SET sum_amount = 1") is DENIED
    assert _attempt(writer, "UPDATE ekb.flow SET pay_money = 1") is DENIED
    assert _attempt(writer, "UPDATE ekb.flow SET voucher_no = 'x'") is DENIED
    assert _attempt(writer, "DELETE FROM ekb.flow") is DENIED
    assert _attempt(writer, "DELETE FROM ekb.flow_log") is DENIED
    assert _attempt(writer, "UPDATE ekb.flow_log SET comment = 'x'") is DENIED
    assert _attempt(writer, "SELECT * FROM ekb.payment") is DENIED  # bank accounts stay out of reach
    assert _attempt(writer, "UPDATE ekb.payment SET status = 'SUCCESS'") is DENIED
    assert _attempt(writer, "TRUNCATE ekb.flow_detail") is DENIED


def test_hostile_identifiers_are_refused_before_any_sql(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("CLAIMSYNC_OA_FORM_TABLE", 'formtable_main_38"; DROP TABLE ecology.hrmresource; --')
    assert main(["db", "roles", "oa"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("claimsync: CLAIMSYNC_OA_FORM_TABLE must be a plain SQL identifier")
    assert main(["db", "roles", "oa", "--writer", "x; DROP ROLE postgres"]) == 2


def test_roles_cli_prints_quoted_grants(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "roles", "expense"]) == 0
    out = capsys.readouterr().out
    assert 'GRANT UPDATE (state, approve_time, update_time) ON "ekb".flow TO "claimsync_expense_writer";' in out
    assert ':"' not in out
