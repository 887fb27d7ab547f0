# ruff: noqa: E501  (the bad-run table reads best one run per line)
"""Twenty deliberately bad sync runs stop before any write; twenty clean ones are never stopped.

Each run is a real ``run_sync`` on demo data in PostgreSQL with the quality gates at both
seams (source: quarantine / breaker; delta: key twice, backwards move, delta size). The
bad runs break the data the way production breaks it: mass corruption, an extraction that
comes back empty (a mapping pointing at the wrong workflow, a wiped table), a delta that
explodes (a column claimsync owns wiped on one side), and a row count that collapses
against the previous full run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from claimsync import quality_gates
from claimsync.config import SourceMapping
from claimsync.errors import RunStopped
from claimsync.pgserver import PgServer
from claimsync.sync import SyncOutcome, run_sync
from tests.integration.sync_support import AS_OF, Clone, Template, clone, drop_template, make_template, snapshot

pytestmark = pytest.mark.slow


def sync(systems: Clone, flow: str = "all", *, settings: Any = None, **kwargs: Any) -> SyncOutcome:
    settings = settings or systems.settings
    kwargs.setdefault("full", True)
    return run_sync(
        settings,
        flow,
        as_of=kwargs.pop("as_of", AS_OF),
        triggered_by="test",
        source_gate=quality_gates.source_gate(settings),
        delta_gate=quality_gates.delta_gate(settings),
        **kwargs,
    )


def execute(systems: Clone, system: str, *statements: str) -> None:
    engine = systems.engine(system)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def applied_writes(systems: Clone) -> int:
    engine = systems.engine("state")
    try:
        with engine.connect() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('claimsync.planned_write')")).scalar()
            if exists is None:
                return 0
            return int(
                conn.execute(sa.text("SELECT count(*) FROM claimsync.planned_write WHERE status = 'applied'")).scalar()
            )
    finally:
        engine.dispose()


# --- clean runs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_clean_runs_are_never_stopped(pg_server: PgServer, seed: int) -> None:
    template = make_template(pg_server, scale=40 + 5 * seed, seed=1000 + seed)
    systems = clone(template)
    try:
        if seed % 2:  # a windowed sync of the last weeks
            outcome = sync(systems, full=False, since=AS_OF - timedelta(days=21 + seed), until=AS_OF)
        else:
            outcome = sync(systems)
        assert outcome.status == "succeeded"
        engine = systems.engine("state")
        try:
            with engine.connect() as conn:
                quarantined = conn.execute(sa.text("SELECT count(*) FROM claimsync.quarantine")).scalar()
                gates = conn.execute(
                    sa.text("SELECT DISTINCT statistics->>'gate' FROM claimsync.validation_result WHERE run_id = :r"),
                    {"r": outcome.run_id},
                ).scalars()
                gate_values = set(gates)
        finally:
            engine.dispose()
        assert quarantined == 0
        assert gate_values == {"passed"}
        if seed % 5 == 0:
            # A second full run (with the first one's row counts to compare against) is not stopped either.
            assert sync(systems, as_of=AS_OF + timedelta(hours=1)).status == "succeeded"
    finally:
        systems.drop()
        drop_template(template)


# --- bad runs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRun:
    """How to break a clone, which flow to run, and what the stop message must name."""

    name: str
    flow: str
    breaks: Callable[[Clone], Any]  # returns replacement Settings, or None
    names: str
    first_clean_run: bool = False


def _sql(system: str, *statements: str) -> Callable[[Clone], None]:
    def run(systems: Clone) -> None:
        execute(systems, system, *statements)

    return run


def _mapping(**changes: Any) -> Callable[[Clone], Any]:
    def run(systems: Clone) -> Any:
        return replace(systems.settings, mapping=replace(SourceMapping(), **changes))

    return run


def _empty_form_table(systems: Clone) -> Any:
    execute(
        systems,
        "oa",
        "CREATE TABLE ecology.formtable_main_99 (LIKE ecology.formtable_main_38 INCLUDING ALL)",
        "CREATE TABLE ecology.formtable_main_99_dt1 (LIKE ecology.formtable_main_38_dt1 INCLUDING ALL)",
    )
    return replace(
        systems.settings,
        mapping=replace(
            SourceMapping(), oa_form_table="formtable_main_99", oa_form_lines_table="formtable_main_99_dt1"
        ),
    )


BAD_RUNS = (
    # Mass corruption: far more than 5% of a table's rows fail a row-level check.
    BadRun("corrupt expense currency", "claims", _sql("expense", "UPDATE ekb.flow SET currency = 'XYZ' WHERE abs(hashtext(id)) % 3 = 0"), "currency_known"),
    BadRun("corrupt OA currency", "claims", _sql("oa", "UPDATE ecology.formtable_main_38 SET bz = '???' WHERE id % 4 = 0"), "currency_known"),
    BadRun("impossible OA dates", "claims", _sql("oa", "UPDATE ecology.workflow_requestbase SET createdate = '2026-02-30' WHERE requestid % 3 = 0"), "created_at_parseable"),
    BadRun("unknown fee types", "claims", _sql("expense", "UPDATE ekb.flow_detail SET fee_type = '未知费用' WHERE seq = 1"), "fee_type_known"),
    BadRun("control characters in names", "org", _sql("oa", "UPDATE ecology.hrmresource SET lastname = lastname || chr(7) WHERE id % 2 = 0"), "name_clean_text"),
    # Empty extraction in a full run while the other system has rows.
    BadRun("wrong workflow id", "claims", _mapping(oa_workflow_id=999), "oa_claims: 0 rows extracted"),
    BadRun("OA requests wiped", "claims", _sql("oa", "DELETE FROM ecology.workflow_requestbase"), "oa_claims: 0 rows extracted"),
    BadRun("empty OA form table", "claims", _empty_form_table, "oa_claims: 0 rows extracted"),
    BadRun("OA employees wiped", "org", _sql("oa", "DELETE FROM ecology.hrmresource"), "oa_employees: 0 rows extracted"),
    BadRun("OA departments wiped", "org", _sql("oa", "DELETE FROM ecology.hrmdepartment"), "oa_departments: 0 rows extracted"),
    # Exploding delta: a column claimsync owns is wiped on one side, so the plan rewrites most of a table.
    BadRun("OA bxdh wiped", "claims", _sql("oa", "UPDATE ecology.formtable_main_38 SET bxdh = NULL"), "write_delta: oa.formtable_main_38"),
    BadRun("OA payment status wiped", "claims", _sql("oa", "UPDATE ecology.formtable_main_38 SET fkzt = NULL, fkrq = NULL, pzh = NULL"), "write_delta: oa.formtable_main_38"),
    BadRun("expense staff renamed", "org", _sql("expense", "UPDATE ekb.staff SET name = name || '（旧）'"), "write_delta: expense.staff"),
    BadRun("expense departments renamed", "org", _sql("expense", "UPDATE ekb.department SET name = name || '（旧）'"), "write_delta: expense.department"),
    BadRun("expense staff wiped", "org", _sql("expense", "DELETE FROM ekb.staff"), "write_delta: expense.staff"),
    # Row count collapse against the previous full run.
    BadRun("most OA requests gone", "claims", _sql("oa", "DELETE FROM ecology.formtable_main_38 WHERE id % 5 <> 0"), "oa_claims: ", True),
    BadRun("most expense flows gone", "claims", _sql("expense", "DELETE FROM ekb.flow WHERE abs(hashtext(id)) % 5 <> 0"), "expense_claims: ", True),
    BadRun("most OA lines gone", "claims", _sql("oa", "DELETE FROM ecology.formtable_main_38_dt1 WHERE id % 4 <> 0"), "oa_lines: ", True),
    BadRun("most expense lines gone", "claims", _sql("expense", "DELETE FROM ekb.flow_detail WHERE seq > 1 OR abs(hashtext(id)) % 3 <> 0"), "expense_lines: ", True),
    BadRun("most staff gone", "org", _sql("expense", "DELETE FROM ekb.staff WHERE abs(hashtext(id)) % 4 <> 0"), "expense_employees: ", True),
)  # fmt: skip


@pytest.fixture(scope="module")
def template(pg_server: PgServer) -> Iterator[Template]:
    made = make_template(pg_server, scale=200, seed=424242)
    yield made
    drop_template(made)


def test_twenty_bad_runs() -> None:
    assert len(BAD_RUNS) == 20
    assert len({b.name for b in BAD_RUNS}) == 20


@pytest.mark.parametrize("bad", BAD_RUNS, ids=[b.name for b in BAD_RUNS])
def test_bad_runs_stop_before_any_write(template: Template, bad: BadRun) -> None:
    systems = clone(template)
    try:
        if bad.first_clean_run:
            assert sync(systems, bad.flow).status == "succeeded"
        settings = bad.breaks(systems) or systems.settings
        before, applied = snapshot(systems, clock=True), applied_writes(systems)
        with pytest.raises(RunStopped) as stopped:
            sync(systems, bad.flow, settings=settings, as_of=AS_OF + timedelta(hours=2))
        message = str(stopped.value)
        assert bad.names in message
        assert "force" in message
        assert "\n" not in message
        assert snapshot(systems, clock=True) == before
        assert applied_writes(systems) == applied
    finally:
        systems.drop()
