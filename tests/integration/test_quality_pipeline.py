"""The gate as its own step, the way the DAGs run it, leaves out exactly what the in-process gate does.

Sync: extract_stage → validate_sync_stage → plan_stage(quarantine_gate) → check_stage(delta_gate)
→ apply → confirm, against ``run_sync`` with the in-process gates on a twin of the same data.
Reconcile: validate_reconcile_run → reconcile_bucket(quarantine_gate) against the in-process gate.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from claimsync import quality_gates
from claimsync.errors import RunStopped
from claimsync.pgserver import PgServer
from claimsync.sync import apply_stage, check_stage, confirm_stage, extract_stage, open_sync, plan_stage, run_sync
from claimsync.writeback import load_plan
from tests.integration.sync_support import AS_OF, Clone, Template, clone, drop_template, make_template, snapshot

pytestmark = pytest.mark.slow

# A few bad flows (fewer than the breaker's minimum): quarantined, the rest syncs.
BREAK_A_FEW = (
    "UPDATE ekb.flow SET currency = 'XYZ' WHERE id IN (SELECT id FROM ekb.flow WHERE oa_request_id IS NOT NULL"
    " ORDER BY id LIMIT 4)"
)


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=300, seed=99)
    yield made
    drop_template(made)


@pytest.fixture
def twins(template: Template) -> Iterator[tuple[Clone, Clone]]:
    made = (clone(template), clone(template))
    for systems in made:
        engine = systems.engine("expense")
        with engine.begin() as conn:
            conn.execute(sa.text(BREAK_A_FEW))
        engine.dispose()
    yield made
    for systems in made:
        systems.drop()


def planned_keys(systems: Clone, run_id: str) -> set[tuple[str, str, str]]:
    engine = systems.engine("state")
    try:
        return {(w.target, w.table, w.record_key) for w in load_plan(engine, run_id)}
    finally:
        engine.dispose()


def quarantined(systems: Clone, run_id: str) -> set[tuple[str, str, str, str]]:
    engine = systems.engine("state")
    try:
        with engine.connect() as conn:
            return {
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT source, entity, record_key, expectation FROM claimsync.quarantine"
                        " WHERE last_run_id = :r AND released_at IS NULL"
                    ),
                    {"r": run_id},
                )
            }
    finally:
        engine.dispose()


def test_the_sync_dag_steps_leave_out_what_the_in_process_gate_does(twins: tuple[Clone, Clone]) -> None:
    steps, whole = twins
    settings = steps.settings
    run = open_sync(settings, "all", run_id="steps", triggered_by="test", as_of=AS_OF, full=True)
    extract_stage(settings, run["run_id"])
    checked = quality_gates.validate_sync_stage(settings, "steps")
    assert checked["gate"] == "passed"
    assert checked["quarantined_records"] == 8  # 4 flows and their 4 OA requests (held back)
    plan_stage(settings, "steps", source_gate=quality_gates.quarantine_gate(settings))
    check_stage(settings, "steps", delta_gate=quality_gates.delta_gate(settings))
    for target in ("expense", "oa"):
        apply_stage(settings, "steps", target)
    assert confirm_stage(settings, "steps")["status"] == "succeeded"

    in_process = run_sync(
        whole.settings, "all", full=True, as_of=AS_OF, run_id="whole", triggered_by="test",
        source_gate=quality_gates.source_gate(whole.settings), delta_gate=quality_gates.delta_gate(whole.settings),
    )  # fmt: skip
    assert in_process.status == "succeeded"
    assert planned_keys(steps, "steps") == planned_keys(whole, "whole")
    assert quarantined(steps, "steps") == quarantined(whole, "whole")
    assert {q[3] for q in quarantined(steps, "steps")} == {
        "expense_claims.currency_known",
        "oa_claims.counterpart_quarantined",
    }
    bad_codes = {q[2] for q in quarantined(steps, "steps") if q[1] == "claims"}
    assert not {k for _, _, k in planned_keys(steps, "steps")} & {c.removeprefix("exp:") for c in bad_codes}
    assert snapshot(steps, runs=False) == snapshot(whole, runs=False)


def test_a_stopped_gate_step_marks_the_run_stopped(template: Template) -> None:
    systems = clone(template)
    try:
        engine = systems.engine("expense")
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE ekb.flow SET state = 'bogus'"))
        engine.dispose()
        settings = systems.settings
        open_sync(settings, "claims", run_id="bad", triggered_by="test", as_of=AS_OF, full=True)
        extract_stage(settings, "bad")
        with pytest.raises(RunStopped, match="raw_state_known"):
            quality_gates.validate_sync_stage(settings, "bad")
        state = systems.engine("state")
        with state.connect() as conn:
            status, error = conn.execute(
                sa.text("SELECT status, error FROM claimsync.sync_run WHERE run_id = 'bad'")
            ).one()
        state.dispose()
        assert status == "stopped"
        assert "raw_state_known" in error
    finally:
        systems.drop()


def exceptions_of(systems: Clone, run_id: str) -> set[tuple[str, str]]:
    engine = systems.engine("state")
    try:
        with engine.connect() as conn:
            return {
                (r.code, r.business_key)
                for r in conn.execute(
                    sa.text(
                        "SELECT e.code, e.business_key FROM claimsync.recon_run_exception x"
                        " JOIN claimsync.recon_exception e ON e.id = x.exception_id WHERE x.run_id = :r"
                    ),
                    {"r": run_id},
                )
            }
    finally:
        engine.dispose()


def test_the_reconcile_dag_steps_leave_out_what_the_in_process_gate_does(twins: tuple[Clone, Clone]) -> None:
    from claimsync.pipeline import reconcile_bucket, record_partials, run_reconciliation, start_reconciliation

    steps, whole = twins
    settings = steps.settings
    start_reconciliation(settings, as_of=AS_OF, run_id="steps", triggered_by="test", buckets=2)
    checked = quality_gates.validate_reconcile_run(settings, "steps")
    assert checked["quarantined_records"] == 8
    for bucket in range(2):
        reconcile_bucket(settings, "steps", bucket=bucket, buckets=2, gate=quality_gates.quarantine_gate(settings))
    record_partials(settings, "steps", expected_buckets=2)

    run_reconciliation(
        whole.settings, as_of=AS_OF, run_id="whole", triggered_by="test",
        gate=quality_gates.source_gate(whole.settings),
    )  # fmt: skip
    found: Any = exceptions_of(steps, "steps")
    assert found == exceptions_of(whole, "whole")
    # The quarantined claims raise nothing: no "currencies differ" amount_mismatch for them.
    held = {q[2] for q in quarantined(steps, "steps") if q[0] == "oa"}
    assert not {k for _, k in found} & held
