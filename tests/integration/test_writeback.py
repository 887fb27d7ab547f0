"""The write protocol against real PostgreSQL: compare-and-set, confirm, recover, conflicts, revert."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync import writeback
from claimsync.errors import ClaimsyncError
from claimsync.migrations import migrate
from claimsync.refschema import create_reference_schema
from claimsync.runs import RunInfo, begin_run
from claimsync.writeback import PlannedWrite, apply_plan, load_plan, revert_run, store_plan
from tests.conftest import Databases

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=SH)
APPROVED_AT = datetime(2026, 3, 2, 10, 30, 15, 123456, tzinfo=SH)


@dataclass
class Systems:
    oa: sa.Engine
    expense: sa.Engine
    state: sa.Engine

    def engines(self) -> dict[str, sa.Engine]:
        return {"oa": self.oa, "expense": self.expense}


SEED_EXPENSE = """
INSERT INTO ekb.department (id, code, name, parent_id, active, update_time) VALUES
  ('d1', 'FIN-01', '财务部', NULL, true, '2026-01-01 00:00+08');
INSERT INTO ekb.staff (id, code, name, department_id, email, cellphone, active, update_time) VALUES
  ('s1', 'E000001', '张伟', 'd1', 'zw@example.com', '13812345678', true, '2026-01-01 00:00+08'),
  ('s2', 'E000002', '李娜', 'd1', NULL, NULL, true, '2026-01-01 00:00+08');
INSERT INTO ekb.flow (id, code, form_type, title, submitter_id, department_id, sum_amount, pay_money, currency,
                      state, oa_request_id, create_time, submit_time, update_time) VALUES
  ('f1', 'B26000001', 'expense', '差旅费', 's1', 'd1', 100.00, 100.00, 'CNY', 'approving', 1,
   '2026-03-01 09:00+08', '2026-03-01 09:00+08', '2026-03-01 09:00+08'),
  ('f2', 'B26000002', 'expense', '餐费', 's2', 'd1', 50.00, 50.00, 'CNY', 'approving', 2,
   '2026-03-01 09:00+08', '2026-03-01 09:00+08', '2026-03-01 09:00+08');
"""

SEED_OA = """
INSERT INTO ecology.formtable_main_38 (id, requestid, bxdh, sqr, sqbm, bxje, bz, fkzt, fkrq, pzh) VALUES
  (1, 1, 'B26000001', 1, 1, 100.00, 'CNY', NULL, NULL, NULL),
  (2, 2, NULL, 2, 1, 50.00, 'CNY', NULL, NULL, NULL),
  (3, 3, NULL, 1, 1, 80.00, 'CNY', NULL, NULL, NULL);
"""


@pytest.fixture
def systems(databases: Databases) -> Iterator[Systems]:
    s = Systems(databases.engine("oa"), databases.engine("expense"), databases.engine("state"))
    create_reference_schema(s.oa, "oa")
    create_reference_schema(s.expense, "expense")
    migrate(s.state)
    with s.expense.begin() as conn:
        conn.exec_driver_sql(SEED_EXPENSE)
    with s.oa.begin() as conn:
        conn.exec_driver_sql(SEED_OA)
    yield s
    for engine in (s.oa, s.expense, s.state):
        engine.dispose()


def start_run(state: sa.Engine, run_id: str, *, dry_run: bool = False) -> RunInfo:
    info = RunInfo(run_id, "claims", T0, "test", "cfg", dry_run=dry_run)
    begin_run(state, info)
    return info


def approve_f1() -> PlannedWrite:
    return PlannedWrite(
        "expense",
        "flow",
        "update",
        "B26000001",
        {"state": "approving", "approve_time": None},
        {"state": "paying", "approve_time": APPROVED_AT},
        "OA request 1 approved",
    )


def paid_in_oa(request_id: int) -> PlannedWrite:
    return PlannedWrite(
        "oa",
        "formtable_main_38",
        "update",
        str(request_id),
        {"fkzt": None, "fkrq": None, "pzh": None},
        {"fkzt": "已支付", "fkrq": "2026-03-05", "pzh": "PZ-0001"},
        "paid in expense",
    )


def new_claim() -> PlannedWrite:
    return PlannedWrite(
        "expense",
        "flow",
        "insert",
        "B26000003",
        None,
        {
            "id": "CS3",
            "code": "B26000003",
            "form_type": "expense",
            "title": "交通费-张伟",
            "submitter_code": "E000001",
            "department_code": "FIN-01",
            "sum_amount": Decimal("80.00"),
            "pay_money": Decimal("80.00"),
            "currency": "CNY",
            "oa_request_id": 3,
            "create_time": T0,
            "submit_time": T0,
            "state": "approving",
            "approve_time": None,
            "lines": [
                {"seq": 1, "fee_type": "交通费", "amount": "30.00", "invoice_code": None,
                 "invoice_number": "12345678901234567890", "invoice_date": "2026-02-28", "remark": None},
                {"seq": 2, "fee_type": "交通费", "amount": "50.00", "invoice_code": "1100231130",
                 "invoice_number": "00012345", "invoice_date": "2026-02-27", "remark": "出租车"},
            ],
        },
        "new request 3 from OA",
    )  # fmt: skip


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def statuses(state: sa.Engine, run_id: str) -> dict[str, str]:
    return {w.record_key: w.status for w in load_plan(state, run_id)}


def test_apply_writes_each_change_once_with_audit_and_flow_log(systems: Systems) -> None:
    start_run(systems.state, "r1")
    plan = [approve_f1(), new_claim(), paid_in_oa(2)]
    assert store_plan(systems.state, "r1", plan) == 3

    exp = apply_plan(systems.expense, systems.state, "r1", "expense", applied_by="tester")
    oa = apply_plan(systems.oa, systems.state, "r1", "oa", applied_by="tester")
    assert (exp.applied, exp.conflicts, exp.recovered, oa.applied) == (2, 0, 0, 1)

    flow = rows(systems.expense, "SELECT state, approve_time, update_time FROM ekb.flow WHERE code = 'B26000001'")[0]
    assert flow.state == "paying"
    assert flow.approve_time == APPROVED_AT
    assert flow.update_time > datetime(2026, 3, 1, 9, 0, tzinfo=SH)  # the change cursor moved
    created = rows(
        systems.expense,
        "SELECT f.submitter_id, f.department_id, f.sum_amount, count(d.id) AS lines, sum(d.amount) AS total"
        " FROM ekb.flow f JOIN ekb.flow_detail d ON d.flow_id = f.id WHERE f.code = 'B26000003'"
        " GROUP BY 1, 2, 3",
    )
    assert [tuple(r) for r in created] == [("s1", "d1", Decimal("80.00"), 2, Decimal("80.00"))]
    assert rows(systems.oa, "SELECT fkzt, fkrq, pzh FROM ecology.formtable_main_38 WHERE requestid = 2")[0] == (
        "已支付",
        "2026-03-05",
        "PZ-0001",
    )
    logs = rows(systems.expense, "SELECT flow_id, action, comment FROM ekb.flow_log ORDER BY flow_id")
    assert [(r.flow_id, r.action) for r in logs] == [("CS3", "claimsync.sync"), ("f1", "claimsync.sync")]
    assert "OA request 1 approved" in logs[1].comment
    assert "r1" in logs[1].comment

    audit = load_plan(systems.state, "r1")
    assert {w.status for w in audit} == {"applied"}
    assert {w.applied_by for w in audit} == {"tester"}
    assert all(w.applied_at is not None for w in audit)
    assert audit[0].before == {"state": "approving", "approve_time": None}
    assert audit[0].after["approve_time"] == "2026-03-02T10:30:15.123456+08:00"
    assert audit[1].after["sum_amount"] == "80.00"  # Decimal as text, exactly

    # Applying again finds every batch confirmed: nothing is written twice.
    again = apply_plan(systems.expense, systems.state, "r1", "expense")
    assert (again.batches, again.applied) == (0, 0)
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow_log")[0][0] == 2
    batches = rows(systems.state, "SELECT status, applied_count FROM claimsync.write_batch WHERE run_id = 'r1'")
    # The flow insert and update share one batch: one transaction per target batch.
    assert sorted(tuple(b) for b in batches) == [("confirmed", 1), ("confirmed", 2)]


def test_a_value_changed_since_it_was_read_is_a_conflict_not_an_overwrite(systems: Systems) -> None:
    start_run(systems.state, "r1")
    store_plan(systems.state, "r1", [approve_f1(), paid_in_oa(2)])
    # A person acts between extract and apply.
    with systems.expense.begin() as conn:
        conn.execute(sa.text("UPDATE ekb.flow SET state = 'rejected' WHERE code = 'B26000001'"))
    with systems.oa.begin() as conn:
        conn.execute(sa.text("UPDATE ecology.formtable_main_38 SET pzh = 'MANUAL-9' WHERE requestid = 2"))

    exp = apply_plan(systems.expense, systems.state, "r1", "expense")
    oa = apply_plan(systems.oa, systems.state, "r1", "oa")
    assert (exp.applied, exp.conflicts, oa.applied, oa.conflicts) == (0, 1, 0, 1)
    assert rows(systems.expense, "SELECT state FROM ekb.flow WHERE code = 'B26000001'")[0][0] == "rejected"
    assert rows(systems.oa, "SELECT fkzt, pzh FROM ecology.formtable_main_38 WHERE requestid = 2")[0] == (
        None,
        "MANUAL-9",
    )
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow_log")[0][0] == 0

    audit = {w.record_key: w for w in load_plan(systems.state, "r1")}
    assert audit["B26000001"].status == "conflict"
    assert "'rejected'" in (audit["B26000001"].detail or "")
    exceptions = rows(
        systems.state,
        "SELECT code, business_key, severity, status, claim_code, oa_request_id FROM claimsync.recon_exception"
        " ORDER BY business_key",
    )
    assert [tuple(e) for e in exceptions] == [
        ("write_conflict", "write:expense:flow:B26000001", "high", "open", "B26000001", None),
        ("write_conflict", "write:oa:formtable_main_38:2", "high", "open", None, 2),
    ]

    # The next run that manages to write the record resolves the conflict.
    with systems.oa.begin() as conn:
        conn.execute(sa.text("UPDATE ecology.formtable_main_38 SET pzh = NULL WHERE requestid = 2"))
    start_run(systems.state, "r2")
    store_plan(systems.state, "r2", [paid_in_oa(2)])
    assert apply_plan(systems.oa, systems.state, "r2", "oa").applied == 1
    status = rows(
        systems.state,
        "SELECT status FROM claimsync.recon_exception WHERE business_key = 'write:oa:formtable_main_38:2'",
    )
    assert status[0][0] == "resolved"


def test_a_batch_applied_but_not_confirmed_is_recovered_on_rerun(
    systems: Systems, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_run(systems.state, "r1")
    store_plan(systems.state, "r1", [approve_f1(), new_claim()], batch_size=1)

    real_confirm = writeback._confirm_batch
    calls = {"n": 0}

    def die_after_first_commit(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        raise SystemExit("killed between apply and confirm")

    monkeypatch.setattr(writeback, "_confirm_batch", die_after_first_commit)
    with pytest.raises(SystemExit):
        apply_plan(systems.expense, systems.state, "r1", "expense")
    monkeypatch.setattr(writeback, "_confirm_batch", real_confirm)
    # The first batch is on the target but the state DB does not know it.
    assert statuses(systems.state, "r1") == {"B26000001": "planned", "B26000003": "planned"}
    assert rows(systems.expense, "SELECT state FROM ekb.flow WHERE code = 'B26000001'")[0][0] == "paying"

    summary = apply_plan(systems.expense, systems.state, "r1", "expense")
    assert (summary.recovered, summary.applied, summary.conflicts) == (1, 1, 0)
    assert statuses(systems.state, "r1") == {"B26000001": "applied", "B26000003": "applied"}
    # One flow_log row per change: the recovered one was written once, by the first attempt.
    logs = rows(systems.expense, "SELECT flow_id, count(*) FROM ekb.flow_log GROUP BY 1 ORDER BY 1")
    assert [tuple(r) for r in logs] == [("CS3", 1), ("f1", 1)]


def test_a_write_whose_reference_is_missing_is_deferred_without_a_conflict(systems: Systems) -> None:
    start_run(systems.state, "r1")
    claim = new_claim()
    after = dict(claim.after) | {"submitter_code": "E999999"}
    store_plan(systems.state, "r1", [PlannedWrite("expense", "flow", "insert", "B26000003", None, after)])
    summary = apply_plan(systems.expense, systems.state, "r1", "expense")
    assert (summary.applied, summary.deferred, summary.conflicts) == (0, 1, 0)
    assert statuses(systems.state, "r1") == {"B26000003": "deferred"}
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow WHERE code = 'B26000003'")[0][0] == 0
    assert rows(systems.state, "SELECT count(*) FROM claimsync.recon_exception")[0][0] == 0


def test_an_insert_that_collides_with_another_row_is_a_conflict(systems: Systems) -> None:
    start_run(systems.state, "r1")
    claim = new_claim()
    after = dict(claim.after) | {"oa_request_id": 2}  # request 2 already has claim B26000002
    store_plan(systems.state, "r1", [PlannedWrite("expense", "flow", "insert", "B26000003", None, after)])
    summary = apply_plan(systems.expense, systems.state, "r1", "expense")
    assert summary.conflicts == 1
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow_detail")[0][0] == 0


def test_revert_restores_before_images_only_where_the_after_image_is_still_there(systems: Systems) -> None:
    start_run(systems.state, "r1")
    store_plan(systems.state, "r1", [approve_f1(), new_claim(), paid_in_oa(2), paid_in_oa(3)])
    apply_plan(systems.expense, systems.state, "r1", "expense")
    apply_plan(systems.oa, systems.state, "r1", "oa")
    # After the run, a person records a different voucher on request 3.
    with systems.oa.begin() as conn:
        conn.execute(sa.text("UPDATE ecology.formtable_main_38 SET pzh = 'PZ-MANUAL' WHERE requestid = 3"))

    summary = revert_run(systems.engines(), systems.state, "r1", reverted_by="ops")
    assert (summary.reverted, summary.refused) == (3, 1)
    assert summary.refused_keys == ["write:oa:formtable_main_38:3"]
    assert "PZ-MANUAL" in summary.details[0]
    assert rows(systems.expense, "SELECT state, approve_time FROM ekb.flow WHERE code = 'B26000001'")[0] == (
        "approving",
        None,
    )
    # The created claim cannot be deleted (the writer has no DELETE): it is voided.
    assert rows(systems.expense, "SELECT state FROM ekb.flow WHERE code = 'B26000003'")[0][0] == "nullify"
    assert rows(systems.oa, "SELECT fkzt, pzh FROM ecology.formtable_main_38 ORDER BY requestid")[1:] == [
        (None, None),
        ("已支付", "PZ-MANUAL"),
    ]
    assert statuses(systems.state, "r1") == {
        "B26000001": "reverted",
        "B26000003": "reverted",
        "2": "reverted",
        "3": "revert_conflict",
    }
    # Reverting again changes nothing.
    again = revert_run(systems.engines(), systems.state, "r1")
    assert (again.reverted, again.refused) == (0, 0)
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow_log WHERE comment LIKE '%revert%'")[0][0] == 2


def test_an_inserted_claim_someone_touched_is_not_voided_by_revert(systems: Systems) -> None:
    start_run(systems.state, "r1")
    store_plan(systems.state, "r1", [new_claim()])
    apply_plan(systems.expense, systems.state, "r1", "expense")
    with systems.expense.begin() as conn:  # finance edits the claim: its change cursor moves
        conn.execute(sa.text("UPDATE ekb.flow SET pay_money = 70.00, update_time = now() WHERE code = 'B26000003'"))
    summary = revert_run(systems.engines(), systems.state, "r1")
    assert (summary.reverted, summary.refused) == (0, 1)
    assert rows(systems.expense, "SELECT state FROM ekb.flow WHERE code = 'B26000003'")[0][0] == "approving"


def test_a_plan_is_stored_once_per_run_and_a_dry_run_is_never_applied(systems: Systems) -> None:
    start_run(systems.state, "r1", dry_run=True)
    assert store_plan(systems.state, "r1", [approve_f1()]) == 1
    assert store_plan(systems.state, "r1", [approve_f1(), paid_in_oa(2)]) == 1  # the first plan stays
    with pytest.raises(ClaimsyncError, match="dry run"):
        apply_plan(systems.expense, systems.state, "r1", "expense")
    start_run(systems.state, "r2")
    assert store_plan(systems.state, "r2", []) == 0
    assert writeback.has_plan(systems.state, "r2")


def test_a_plan_with_unknown_fields_or_duplicate_keys_is_refused(systems: Systems) -> None:
    start_run(systems.state, "r1")
    bad = PlannedWrite("expense", "flow", "update", "B26000001", {"sum_amount": "1"}, {"sum_amount": "2"})
    with pytest.raises(ClaimsyncError, match="set only when the row is created"):
        store_plan(systems.state, "r1", [bad])
    with pytest.raises(ClaimsyncError, match="twice"):
        store_plan(systems.state, "r1", [approve_f1(), approve_f1()])
    with pytest.raises(ClaimsyncError, match="does not write"):
        store_plan(systems.state, "r1", [PlannedWrite("expense", "payment", "update", "p", {}, {})])


def test_a_row_someone_else_already_changed_the_same_way_is_unchanged_not_audited(systems: Systems) -> None:
    start_run(systems.state, "r1")
    store_plan(systems.state, "r1", [approve_f1()])
    with systems.expense.begin() as conn:  # the same approval arrives through another channel first
        conn.execute(
            sa.text("UPDATE ekb.flow SET state = 'paying', approve_time = :t WHERE code = 'B26000001'"),
            {"t": APPROVED_AT},
        )
    summary = apply_plan(systems.expense, systems.state, "r1", "expense")
    assert (summary.applied, summary.unchanged, summary.recovered, summary.conflicts) == (0, 1, 0, 0)
    audit = load_plan(systems.state, "r1")
    assert [(w.status, w.applied_at) for w in audit] == [("unchanged", None)]
    assert rows(systems.expense, "SELECT count(*) FROM ekb.flow_log")[0][0] == 0
