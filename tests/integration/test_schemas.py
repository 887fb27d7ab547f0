"""The reference DDL matches SOURCE_SYSTEMS.md column by column, and `db init` is idempotent."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from claimsync.cli import main
from claimsync.migrations import applied_versions, available_migrations, migrate
from claimsync.refschema import create_reference_schema
from tests.conftest import Databases

# (table, column) → information_schema type, as SOURCE_SYSTEMS.md gives them.
OA_COLUMNS = {
    "hrmdepartment": {
        "id": "integer", "departmentmark": "character varying(60)", "departmentname": "character varying(200)",
        "supdepid": "integer", "canceled": "character(1)", "modified": "character(19)",
    },
    "hrmresource": {
        "id": "integer", "workcode": "character varying(60)", "lastname": "character varying(200)",
        "departmentid": "integer", "status": "integer", "email": "character varying(200)",
        "mobile": "character varying(40)", "certificatenum": "character varying(40)",
        "lastmoddate": "character(10)", "lastmodtime": "character(8)",
    },
    "workflow_requestbase": {
        "requestid": "integer", "workflowid": "integer", "requestmark": "character varying(100)",
        "requestname": "character varying(400)", "creater": "integer", "createdate": "character(10)",
        "createtime": "character(8)", "currentnodetype": "character(1)", "status": "character varying(100)",
        "lastoperator": "integer", "lastoperatedate": "character(10)", "lastoperatetime": "character(8)",
        "deleted": "integer",
    },
    "workflow_requestlog": {
        "logid": "integer", "requestid": "integer", "nodeid": "integer", "logtype": "character(1)",
        "operator": "integer", "operatedate": "character(10)", "operatetime": "character(8)", "remark": "text",
    },
    "formtable_main_38": {
        "id": "integer", "requestid": "integer", "bxdh": "character varying(50)", "sqr": "integer",
        "sqbm": "integer", "bxje": "numeric(15,2)", "bz": "character varying(10)",
        "fkzt": "character varying(20)", "fkrq": "character(10)", "pzh": "character varying(50)",
    },
    "formtable_main_38_dt1": {
        "id": "integer", "mainid": "integer", "fylx": "character varying(50)", "je": "numeric(15,2)",
        "fpdm": "character varying(12)", "fphm": "character varying(20)", "kprq": "character(10)",
        "sm": "character varying(400)",
    },
}  # fmt: skip

TSZ = "timestamp with time zone"
EXPENSE_COLUMNS = {
    "department": {
        "id": "character varying(32)", "code": "character varying(60)", "name": "character varying(200)",
        "parent_id": "character varying(32)", "active": "boolean", "update_time": TSZ,
    },
    "staff": {
        "id": "character varying(32)", "code": "character varying(60)", "name": "character varying(200)",
        "department_id": "character varying(32)", "email": "character varying(200)",
        "cellphone": "character varying(40)", "active": "boolean", "update_time": TSZ,
    },
    "flow": {
        "id": "character varying(32)", "code": "character varying(40)", "form_type": "character varying(20)",
        "title": "character varying(400)", "submitter_id": "character varying(32)",
        "department_id": "character varying(32)", "sum_amount": "numeric(18,2)", "pay_money": "numeric(18,2)",
        "currency": "character(3)", "state": "character varying(20)", "oa_request_id": "integer",
        "create_time": TSZ, "submit_time": TSZ, "approve_time": TSZ, "pay_time": TSZ,
        "voucher_no": "character varying(50)", "update_time": TSZ,
    },
    "flow_detail": {
        "id": "character varying(32)", "flow_id": "character varying(32)", "seq": "integer",
        "fee_type": "character varying(50)", "amount": "numeric(18,2)", "invoice_code": "character varying(12)",
        "invoice_number": "character varying(20)", "invoice_date": "date", "remark": "character varying(400)",
    },
    "payment": {
        "id": "character varying(32)", "flow_id": "character varying(32)", "amount": "numeric(18,2)",
        "status": "character varying(20)", "payee_name": "character varying(200)",
        "payee_account": "character varying(40)", "create_time": TSZ, "finish_time": TSZ, "update_time": TSZ,
    },
    "flow_log": {
        "id": "bigint", "flow_id": "character varying(32)", "action": "character varying(40)",
        "operator_id": "character varying(32)", "time": TSZ, "comment": "text",
    },
}  # fmt: skip

_TYPE_SQL = """
SELECT table_name, column_name,
       CASE
         WHEN data_type IN ('character varying', 'character')
           THEN data_type || '(' || character_maximum_length || ')'
         WHEN data_type = 'numeric' THEN 'numeric(' || numeric_precision || ',' || numeric_scale || ')'
         ELSE data_type
       END
FROM information_schema.columns WHERE table_schema = :schema
"""


def _columns(engine: sa.Engine, schema: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    with engine.connect() as conn:
        for table, column, type_ in conn.execute(sa.text(_TYPE_SQL), {"schema": schema}):
            found.setdefault(table, {})[column] = type_
    return found


@pytest.mark.parametrize(
    ("system", "schema", "expected"), [("oa", "ecology", OA_COLUMNS), ("expense", "ekb", EXPENSE_COLUMNS)]
)
def test_reference_ddl_matches_the_spec(databases: Databases, system: str, schema: str, expected: dict) -> None:
    engine = databases.engine(system)
    create_reference_schema(engine, system)
    create_reference_schema(engine, system)  # re-applying is harmless
    assert _columns(engine, schema) == expected


def test_db_init_is_idempotent(databases: Databases, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "init", "--state-url", databases.state_url]) == 0
    assert "applied state migration 001_initial" in capsys.readouterr().out
    engine = databases.engine("state")
    assert applied_versions(engine) == [m.version for m in available_migrations()]
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT version, applied_at FROM claimsync.schema_migration")).all()
    assert main(["db", "init", "--state-url", databases.state_url]) == 0
    assert "up to date" in capsys.readouterr().out
    assert migrate(engine) == []
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version, applied_at FROM claimsync.schema_migration")).all() == before
        tables = set(
            conn.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'claimsync'")
            ).scalars()
        )
    assert {"sync_run", "planned_write", "watermark", "recon_exception", "quarantine", "signoff"} <= tables


def test_a_failing_migration_leaves_nothing_half_applied(databases: Databases, tmp_path) -> None:
    (tmp_path / "001_good.sql").write_text("CREATE TABLE claimsync.good (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE claimsync.half (id int); SELECT * FROM no_such_table;")
    engine = databases.engine("state")
    with pytest.raises(sa.exc.ProgrammingError):
        migrate(engine, tmp_path)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT to_regclass('claimsync.half')")).scalar() is None
        assert conn.execute(sa.text("SELECT version FROM claimsync.schema_migration")).scalars().all() == [1]


def test_bad_url_is_one_line_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "init", "--state-url", "postgresql://nobody@127.0.0.1:1/nothing"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("claimsync: cannot connect to the state database at postgresql://nobody@127.0.0.1:1/nothing")
    assert len(err.strip().splitlines()) == 1
    assert main(["db", "init", "--state-url", "not a url"]) == 2
    assert "not a SQLAlchemy URL" in capsys.readouterr().err


def test_missing_url_says_which_variable_to_set(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.delenv("CLAIMSYNC_STATE_URL", raising=False)
    assert main(["db", "init"]) == 2
    assert "set CLAIMSYNC_STATE_URL" in capsys.readouterr().err
