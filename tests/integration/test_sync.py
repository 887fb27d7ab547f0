"""claimsync sync on demo data in real PostgreSQL: convergence, idempotency, windows, conflicts,
dry run, circuit breaker, concurrency, revert and deferred claims."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa

from claimsync.canonical import Sides
from claimsync.errors import RunStopped
from claimsync.pgserver import PgServer
from claimsync.runs import RunInfo, flow_lock
from claimsync.sync import run_sync, watermark
from claimsync.writeback import load_plan
from tests.integration.sync_support import (
    AS_OF,
    Clone,
    Template,
    audit,
    clone,
    drop_template,
    expected_after_sync,
    make_template,
    reconciled,
    rows,
    scalar,
    snapshot,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=600)
    yield made
    drop_template(made)


@pytest.fixture
def systems(template: Template) -> Iterator[Clone]:
    made = clone(template)
    yield made
    made.drop()


def test_one_sync_fixes_what_sync_owns_and_a_second_writes_nothing(systems: Clone, template: Template) -> None:
    key = template.key
    assert expected_after_sync(key) != set(key.all_keys())  # the demo plants breaks sync fixes

    first = run_sync(systems.settings, "all", full=True, as_of=AS_OF, triggered_by="test")
    assert first.status == "succeeded"
    assert first.written > 0
    assert first.count("conflict") == 0
    # Every OA request the key says sync creates a claim for got one, and nothing else did.
    fixed_requests = {k for keys in key.fixed_by_sync.values() for k in keys if k.startswith("oa:")}
    created = [w for w in load_plan(systems.engine("state"), first.run_id) if w.operation == "insert"]
    claims = {f"oa:{w.after['oa_request_id']}" for w in created if w.table == "flow"}
    assert claims == fixed_requests

    # Convergence: what remains is exactly what needs a person.
    assert reconciled(systems) == expected_after_sync(key)

    # Idempotency: the same sync again, and a windowed one, write nothing.
    before = snapshot(systems, clock=True)
    second = run_sync(systems.settings, "all", full=True, as_of=AS_OF + timedelta(minutes=1), triggered_by="test")
    assert (second.written, second.planned) == (0, {})
    third = run_sync(
        systems.settings, "all", since=AS_OF - timedelta(days=90), until=AS_OF, as_of=AS_OF + timedelta(minutes=2)
    )
    assert (third.written, third.planned) == (0, {})
    assert snapshot(systems, clock=True) == before

    # The audit: one applied row per change, and one flow_log row per claim changed.
    applied = [r for r in audit(systems) if r.status == "applied"]
    assert len(applied) == first.written
    assert len({(r.target, r.table_name, r.record_key) for r in applied}) == len(applied)
    flow_changes = Counter(r.record_key for r in applied if r.table_name == "flow")
    expense = systems.engine("expense")
    logged = rows(
        expense,
        "SELECT f.code, count(*) FROM ekb.flow_log l JOIN ekb.flow f ON f.id = l.flow_id"
        " WHERE l.action = 'claimsync.sync' AND l.comment LIKE :mine GROUP BY f.code",
        mine=f"claimsync run {first.run_id}:%",
    )
    assert dict(logged) == dict(flow_changes)
    expense.dispose()


def test_an_incremental_run_reads_its_window_and_the_watermark_moves_after_confirm(systems: Clone) -> None:
    run_sync(systems.settings, "all", full=True, as_of=AS_OF)
    state = systems.engine("state")
    assert watermark(state, "claims") == AS_OF
    assert watermark(state, "org") == AS_OF

    # An approver archives a request in OA after the full run (the OA cursor moves).
    oa = systems.engine("oa")
    request_id = scalar(
        oa,
        "SELECT r.requestid FROM ecology.workflow_requestbase r JOIN ecology.formtable_main_38 f USING (requestid)"
        " WHERE r.workflowid = 38 AND r.currentnodetype = '2' AND r.deleted = 0 AND f.bxdh IS NOT NULL"
        " ORDER BY r.requestid LIMIT 1",
    )
    code = scalar(oa, "SELECT bxdh FROM ecology.formtable_main_38 WHERE requestid = :r", r=request_id)
    with oa.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO ecology.workflow_requestlog (logid, requestid, nodeid, logtype, operator, operatedate,"
                " operatetime, remark) SELECT max(logid) + 1, :r, 3, '0', 1, '2026-03-31', '12:05:00', '同意'"
                " FROM ecology.workflow_requestlog"
            ),
            {"r": request_id},
        )
        conn.execute(
            sa.text(
                "UPDATE ecology.workflow_requestbase SET currentnodetype = '3', status = '归档',"
                " lastoperatedate = '2026-03-31', lastoperatetime = '12:05:00' WHERE requestid = :r"
            ),
            {"r": request_id},
        )
    oa.dispose()

    # No --since: the run starts at the watermark and sees just that change.
    run = run_sync(systems.settings, "claims", until=AS_OF + timedelta(minutes=15), as_of=AS_OF + timedelta(minutes=15))
    assert not run.full
    assert run.window_start == AS_OF
    assert run.planned == {"expense.flow.update.applied": 1}
    expense = systems.engine("expense")
    assert rows(expense, "SELECT state, approve_time FROM ekb.flow WHERE code = :c", c=code)[0] == (
        "paying",
        AS_OF + timedelta(minutes=5),
    )
    expense.dispose()
    assert watermark(state, "claims") == AS_OF + timedelta(minutes=15)
    assert watermark(state, "org") == AS_OF  # the org flow did not run
    state.dispose()


def test_a_dry_run_stores_the_plan_and_writes_nothing(systems: Clone) -> None:
    before = snapshot(systems, clock=True)
    outcome = run_sync(systems.settings, "all", full=True, dry_run=True, as_of=AS_OF)
    assert outcome.status == "dry_run"
    assert outcome.written == 0
    assert snapshot(systems, clock=True) == before
    state = systems.engine("state")
    plan = load_plan(state, outcome.run_id)
    assert plan
    assert {w.status for w in plan} == {"planned"}
    assert watermark(state, "claims") is None  # a dry run does not move the watermark
    state.dispose()
    # The real run afterwards plans the same writes.
    real = run_sync(systems.settings, "all", full=True, as_of=AS_OF)
    assert sum(real.planned.values()) == len(plan)


def test_the_circuit_breaker_stops_an_exploding_delta_before_any_write(template: Template) -> None:
    systems = clone(template, delta_limit=0.01)
    try:
        before = snapshot(systems, clock=True)
        with pytest.raises(RunStopped, match=r"oa\.formtable_main_38: \d+ writes touch .* over the limit .*--force"):
            run_sync(systems.settings, "all", full=True, as_of=AS_OF)
        assert snapshot(systems, clock=True) == before
        state = systems.engine("state")
        assert scalar(state, "SELECT status FROM claimsync.sync_run") == "stopped"
        forced = run_sync(systems.settings, "all", full=True, force=True, as_of=AS_OF)
        assert forced.written > 0
        assert forced.breaker
        # The stopped run's plan was never applied, and is not applied later either.
        assert scalar(state, "SELECT count(*) FROM claimsync.planned_write WHERE status = 'applied'") == forced.written
        state.dispose()
    finally:
        systems.drop()


def test_a_value_a_person_changes_between_extract_and_apply_becomes_a_write_conflict(systems: Clone) -> None:
    changed: dict[str, str] = {}

    def person_acts(sides: Sides, run: RunInfo) -> Sides:
        # After extraction, before the plan is applied: finance rejects one claim the plan will approve.
        oa = sides.oa_claims
        expense = sides.expense_claims
        approved = set(oa.loc[oa["state"] == "approved", "request_id"].dropna().astype(int).tolist())
        target = expense[(expense["state"] == "submitted") & expense["oa_request_id"].isin(approved)]
        code = str(sorted(target["claim_code"].tolist())[0])
        engine = sa.create_engine(str(systems.settings.expense_url))
        with engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE ekb.flow SET state = 'rejected', update_time = now() WHERE code = :c"), {"c": code}
            )
        engine.dispose()
        changed["code"] = code
        return sides

    outcome = run_sync(systems.settings, "claims", full=True, as_of=AS_OF, source_gate=person_acts)
    code = changed["code"]
    assert outcome.count("conflict") == 1
    expense = systems.engine("expense")
    assert scalar(expense, "SELECT state FROM ekb.flow WHERE code = :c", c=code) == "rejected"  # not overwritten
    expense.dispose()
    state = systems.engine("state")
    exception = rows(
        state,
        "SELECT code, status, claim_code, detail FROM claimsync.recon_exception WHERE business_key = :k",
        k=f"write:expense:flow:{code}",
    )
    assert [(e.code, e.status, e.claim_code) for e in exception] == [("write_conflict", "open", code)]
    assert "rejected" in exception[0].detail
    conflict = [w for w in load_plan(state, outcome.run_id) if w.status == "conflict"]
    assert [w.record_key for w in conflict] == [code]
    state.dispose()


def test_two_copies_of_a_flow_started_together_write_once(systems: Clone) -> None:
    cmd = [sys.executable, "-m", "claimsync", "sync", "all", "--full"]
    first = subprocess.Popen(cmd, env=systems.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(cmd, env=systems.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [p.communicate(timeout=300) for p in (first, second)]
    codes = sorted(p.returncode for p in (first, second))
    busy = [err for (_, err) in results if "holds the lock" in err]
    # Either one exited cleanly because the other held the lock, or (started far enough apart)
    # the second found nothing left to write. Never both writing.
    applied = [r for r in audit(systems) if r.status == "applied"]
    assert len({(r.target, r.table_name, r.record_key) for r in applied}) == len(applied)
    if busy:
        assert codes == [0, 1]
        assert len(busy) == 1
        assert "Traceback" not in busy[0]
    else:
        assert codes == [0, 0]
        assert any("0 row(s) written" in out for (out, _) in results)

    # With --wait the second copy waits for the lock, then finds nothing to write.
    state = systems.engine("state")
    holder_ready = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with flow_lock(state, "claims"):
            holder_ready.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    holder_ready.wait(10)
    waiting = subprocess.Popen(
        [*cmd[:-1], "--wait"], env=systems.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(3)
    assert waiting.poll() is None  # still waiting for the lock
    release.set()
    holder.join()
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert "0 row(s) written" in out
    state.dispose()


def test_revert_puts_back_what_is_still_as_written_and_reports_the_rest(systems: Clone) -> None:
    before = snapshot(systems)
    outcome = run_sync(systems.settings, "claims", full=True, as_of=AS_OF)
    state = systems.engine("state")
    fkzt_write = next(w for w in load_plan(state, outcome.run_id) if w.target == "oa" and "fkzt" in w.after)
    oa = systems.engine("oa")
    with oa.begin() as conn:  # someone records a voucher by hand after the sync
        conn.execute(
            sa.text("UPDATE ecology.formtable_main_38 SET fkzt = '支付失败' WHERE requestid = :r"),
            {"r": int(fkzt_write.record_key)},
        )
    result = subprocess.run(
        [sys.executable, "-m", "claimsync", "revert", outcome.run_id],
        env=systems.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"{outcome.written - 1} change(s) put back, 1 left as they are" in result.stdout
    assert f"formtable_main_38 {fkzt_write.record_key}" in result.stdout
    statuses = Counter(w.status for w in load_plan(state, outcome.run_id))
    assert statuses == {"reverted": outcome.written - 1, "revert_conflict": 1}
    # Everything but that row and the claims it created (voided, not deleted) is as before the sync.
    after = snapshot(systems)
    assert after.digests["expense.department"] == before.digests["expense.department"]
    assert (
        scalar(oa, "SELECT fkzt FROM ecology.formtable_main_38 WHERE requestid = :r", r=int(fkzt_write.record_key))
        == "支付失败"
    )
    expense = systems.engine("expense")
    created = [w.record_key for w in load_plan(state, outcome.run_id) if w.operation == "insert"]
    assert {s for (s,) in rows(expense, "SELECT state FROM ekb.flow WHERE code = ANY(:c)", c=created)} == {"nullify"}
    bxdh_left = scalar(oa, "SELECT count(*) FROM ecology.formtable_main_38 WHERE bxdh = ANY(:c)", c=created)
    assert bxdh_left == 0
    for engine in (state, oa, expense):
        engine.dispose()


def test_a_new_employees_claim_waits_for_the_org_sync_then_is_created(systems: Clone) -> None:
    run_sync(systems.settings, "all", full=True, as_of=AS_OF)
    oa = systems.engine("oa")
    with oa.begin() as conn:  # a new hire files a claim before the org sync has run
        conn.execute(
            sa.text(
                "INSERT INTO ecology.hrmresource (id, workcode, lastname, departmentid, status, email, mobile,"
                " lastmoddate, lastmodtime) SELECT max(id) + 1, 'E999001', '新员工', 1, 0, NULL, '13800000001',"
                " '2026-03-31', '12:01:00' FROM ecology.hrmresource"
            )
        )
        rid = conn.execute(sa.text("SELECT max(requestid) + 1 FROM ecology.workflow_requestbase")).scalar_one()
        conn.execute(
            sa.text(
                "INSERT INTO ecology.workflow_requestbase (requestid, workflowid, requestmark, requestname, creater,"
                " createdate, createtime, currentnodetype, status, lastoperator, lastoperatedate, lastoperatetime,"
                " deleted) SELECT :r, 38, 'FYBX-2026-999001', '交通费报销-新员工', e.id, '2026-03-31', '12:02:00',"
                " '1', '部门经理审批', e.id, '2026-03-31', '12:02:00', 0 FROM ecology.hrmresource e"
                " WHERE e.workcode = 'E999001'"
            ),
            {"r": rid},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ecology.formtable_main_38 (id, requestid, bxdh, sqr, sqbm, bxje, bz)"
                " SELECT (SELECT max(id) + 1 FROM ecology.formtable_main_38), :r, NULL, e.id, 1, 88.00, 'CNY'"
                " FROM ecology.hrmresource e WHERE e.workcode = 'E999001'"
            ),
            {"r": rid},
        )
        conn.execute(
            sa.text(
                "INSERT INTO ecology.formtable_main_38_dt1 (id, mainid, fylx, je, fphm, kprq, sm)"
                " SELECT (SELECT max(id) + 1 FROM ecology.formtable_main_38_dt1), f.id, '交通费', 88.00,"
                " '00099001', '2026-03-30', '机场大巴' FROM ecology.formtable_main_38 f WHERE f.requestid = :r"
            ),
            {"r": rid},
        )
    oa.dispose()
    t1, t2, t3 = (AS_OF + timedelta(minutes=m) for m in (15, 30, 60))
    claims = run_sync(systems.settings, "claims", until=t1, as_of=t1)
    assert claims.planned == {"expense.flow.insert.deferred": 1, "oa.formtable_main_38.update.deferred": 1}
    assert claims.count("conflict") == 0
    org = run_sync(systems.settings, "org", until=t2, as_of=t2)
    assert org.planned == {"expense.staff.insert.applied": 1}
    # The next claims run's window no longer holds the request: the deferred writes are carried over.
    later = run_sync(systems.settings, "claims", until=t3, as_of=t3)
    assert later.planned == {"expense.flow.insert.applied": 1, "oa.formtable_main_38.update.applied": 1}
    expense = systems.engine("expense")
    flow = rows(
        expense,
        "SELECT f.code, f.title, f.state, s.code AS submitter, d.remark FROM ekb.flow f"
        " JOIN ekb.staff s ON s.id = f.submitter_id JOIN ekb.flow_detail d ON d.flow_id = f.id"
        " WHERE f.oa_request_id = :r",
        r=rid,
    )
    assert [(f.title, f.state, f.submitter, f.remark) for f in flow] == [
        ("交通费报销-新员工", "approving", "E999001", "机场大巴")
    ]
    assert scalar(expense, "SELECT cellphone FROM ekb.staff WHERE code = 'E999001'") == "13800000001"
    expense.dispose()
    oa = systems.engine("oa")
    assert scalar(oa, "SELECT bxdh FROM ecology.formtable_main_38 WHERE requestid = :r", r=rid) == flow[0].code
    oa.dispose()


def test_a_rerun_of_the_same_run_id_reuses_its_plan(systems: Clone) -> None:
    first = run_sync(systems.settings, "claims", full=True, as_of=AS_OF, run_id="manual-1")
    again = run_sync(systems.settings, "claims", full=True, as_of=AS_OF, run_id="manual-1")
    assert again.written == 0
    assert again.planned == first.planned
    state = systems.engine("state")
    assert scalar(state, "SELECT count(*) FROM claimsync.sync_run") == 1
    state.dispose()
