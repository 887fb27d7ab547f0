"""The demo generator against real PostgreSQL: deterministic, well-formed, and its answer key right.

The answer key is checked against a small, deliberately plain re-implementation of
claimsync.rules written from its docstring (``reference_reconcile`` below): row by row in
Python, no pandas, nothing shared with the generator but the key formats.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from claimsync.cli import main
from claimsync.config import Settings
from claimsync.demo import AnswerKey, LoadStats, generate, load_answer_key, write_answer_key
from claimsync.refschema import create_reference_schema
from claimsync.rules import (
    FEE_TYPES,
    FKZT_PAID,
    FKZT_PAYING,
    OA_DECISIVE_LOGTYPES,
    RECONCILE_CODES,
    ClaimState,
    ExceptionCode,
    expense_key,
    invoice_key,
    oa_key,
)
from tests.conftest import Databases

TZ = ZoneInfo("Asia/Shanghai")
AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=TZ)
OA_TABLES = (
    "hrmdepartment", "hrmresource", "workflow_requestbase", "workflow_requestlog", "formtable_main_38",
    "formtable_main_38_dt1",
)  # fmt: skip
EXPENSE_TABLES = ("department", "staff", "flow", "flow_detail", "payment", "flow_log")
PRIMARY_KEY = {"workflow_requestbase": "requestid", "workflow_requestlog": "logid"}


def _fill(databases: Databases, *, scale: int, seed: int, settings: Settings | None = None) -> AnswerKey:
    oa, expense = databases.engine("oa"), databases.engine("expense")
    create_reference_schema(oa, "oa", recreate=True)
    create_reference_schema(expense, "expense", recreate=True)
    try:
        return generate(oa, expense, scale=scale, seed=seed, as_of=AS_OF, settings=settings or Settings())
    finally:
        oa.dispose()
        expense.dispose()


def _checksums(databases: Databases) -> dict[str, str]:
    """md5 of every table's rows in primary-key order."""
    result = {}
    for system, schema, tables in (("oa", "ecology", OA_TABLES), ("expense", "ekb", EXPENSE_TABLES)):
        engine = databases.engine(system)
        with engine.connect() as conn:
            for table in tables:
                pk = PRIMARY_KEY.get(table, "id")
                result[f"{system}.{table}"] = conn.execute(
                    sa.text(f"SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.{pk})), '') "
                            f"FROM {schema}.{table} t")
                ).scalar_one()  # fmt: skip
        engine.dispose()
    return result


# --------------------------------------------------------------------------------------------
# A plain reading of claimsync.rules, for checking the answer key.
# --------------------------------------------------------------------------------------------

APPROVED_OR_LATER = {ClaimState.APPROVED, ClaimState.PAYING, ClaimState.PAID}
OPEN = {ClaimState.SUBMITTED, ClaimState.APPROVED, ClaimState.PAYING}
DEAD = {ClaimState.VOIDED, ClaimState.REJECTED, ClaimState.WITHDRAWN}


@dataclass
class Request:
    rid: int
    state: ClaimState
    changed: datetime
    bxdh: str | None
    claimant: str | None  # workcode, None when sqr names no employee
    claimant_status: int | None
    amount: Decimal
    currency: str
    lines: list[tuple[Decimal, str | None, str | None]]


@dataclass
class Claim:
    code: str
    state: ClaimState
    raw_state: str
    changed: datetime
    oa_request_id: int | None
    claimant: str | None  # staff code, None when the submitter is not in staff
    amount: Decimal
    currency: str
    lines: list[tuple[Decimal, str | None, str | None]]


@dataclass
class Reconciliation:
    found: set[tuple[str, str]]
    ambiguous_pairs: int  # pairs the rules could be read two ways on (must be none in demo data)
    ambiguous_invoices: int


def _load(databases: Databases) -> tuple[dict[int, Request], dict[str, Claim]]:
    oa, expense = databases.engine("oa"), databases.engine("expense")
    with oa.connect() as conn:
        employees = {
            i: (w, s) for i, w, s in conn.execute(sa.text("SELECT id, workcode, status FROM ecology.hrmresource"))
        }
        logs: dict[int, list[tuple[str, str, int, str]]] = defaultdict(list)
        for rid, d, t, logid, logtype in conn.execute(
            sa.text("SELECT requestid, operatedate, operatetime, logid, logtype FROM ecology.workflow_requestlog")
        ):
            logs[rid].append((d, t, logid, logtype))
        lines: dict[int, list[tuple[Decimal, str | None, str | None]]] = defaultdict(list)
        for mainid, je, fpdm, fphm in conn.execute(
            sa.text("SELECT mainid, je, fpdm, fphm FROM ecology.formtable_main_38_dt1")
        ):
            lines[mainid].append((je, fpdm, fphm))
        requests = {}
        for row in conn.execute(
            sa.text(
                "SELECT r.requestid, r.currentnodetype, r.deleted, r.lastoperatedate, r.lastoperatetime, "
                "f.id, f.bxdh, f.sqr, f.bxje, f.bz, f.fkzt FROM ecology.workflow_requestbase r "
                "JOIN ecology.formtable_main_38 f ON f.requestid = r.requestid WHERE r.workflowid = 38"
            )
        ):
            rid, cnt, deleted, d, t, form_id, bxdh, sqr, bxje, bz, fkzt = row
            if deleted == 1:
                state = ClaimState.VOIDED
            elif cnt == "3":
                state = {FKZT_PAYING: ClaimState.PAYING, FKZT_PAID: ClaimState.PAID}.get(fkzt, ClaimState.APPROVED)
            elif cnt in ("1", "2"):
                state = ClaimState.SUBMITTED
            else:
                decisive = sorted(x for x in logs[rid] if x[3] in OA_DECISIVE_LOGTYPES)
                last = decisive[-1][3] if decisive else None
                state = {"3": ClaimState.REJECTED, "r": ClaimState.WITHDRAWN}.get(last or "", ClaimState.DRAFT)
            workcode, status = employees.get(sqr, (None, None))
            requests[rid] = Request(
                rid, state, datetime.fromisoformat(f"{d}T{t}").replace(tzinfo=TZ), bxdh, workcode, status,
                bxje, bz, lines[form_id],
            )  # fmt: skip
    with expense.connect() as conn:
        staff = dict(conn.execute(sa.text("SELECT id, code FROM ekb.staff")).all())
        payments: dict[str, set[str]] = defaultdict(set)
        for flow_id, status in conn.execute(sa.text("SELECT flow_id, status FROM ekb.payment")):
            payments[flow_id].add(status)
        details: dict[str, list[tuple[Decimal, str | None, str | None]]] = defaultdict(list)
        for flow_id, amount, code, number in conn.execute(
            sa.text("SELECT flow_id, amount, invoice_code, invoice_number FROM ekb.flow_detail")
        ):
            details[flow_id].append((amount, code, number))
        claims = {}
        for fid, code, raw, oa_id, submitter, amount, currency, changed in conn.execute(
            sa.text(
                "SELECT id, code, state, oa_request_id, submitter_id, sum_amount, currency, update_time "
                "FROM ekb.flow WHERE form_type = 'expense'"
            )
        ):
            if raw == "paying":
                state = ClaimState.PAYING if payments[fid] & {"PROCESSING", "SUCCESS"} else ClaimState.APPROVED
            else:
                state = {
                    "draft": ClaimState.DRAFT, "pending": ClaimState.SUBMITTED, "approving": ClaimState.SUBMITTED,
                    "rejected": ClaimState.REJECTED, "nullify": ClaimState.VOIDED, "paid": ClaimState.PAID,
                    "archived": ClaimState.PAID,
                }[raw]  # fmt: skip
            claims[code] = Claim(
                code, state, raw, changed, oa_id, staff.get(submitter), amount, currency.strip(), details[fid]
            )
    oa.dispose()
    expense.dispose()
    return requests, claims


def reference_reconcile(databases: Databases, as_of: datetime, grace: timedelta) -> Reconciliation:
    requests, claims = _load(databases)
    status_of = {}
    with databases.engine("oa").connect() as conn:
        status_of = dict(conn.execute(sa.text("SELECT workcode, status FROM ecology.hrmresource")).all())
    cutoff = as_of - grace
    found: set[tuple[str, str]] = set()
    by_bxdh: dict[str, list[int]] = defaultdict(list)
    for r in requests.values():
        if r.bxdh:
            by_bxdh[r.bxdh].append(r.rid)

    reach = {}
    for c in claims.values():
        targets = set(by_bxdh.get(c.code, []))
        if c.oa_request_id is not None and c.oa_request_id in requests:
            targets.add(c.oa_request_id)
        reach[c.code] = targets
    reached_by: dict[int, set[str]] = defaultdict(set)
    for code, targets in reach.items():
        for rid in targets:
            reached_by[rid].add(code)
    in_dup_link_r: set[int] = set()
    in_dup_link_c: set[str] = set()
    for rid, codes in reached_by.items():
        if len(codes) >= 2:
            found.add((ExceptionCode.DUPLICATE_LINK, oa_key(rid)))
            in_dup_link_r.add(rid)
            in_dup_link_c.update(codes)
    for code, targets in reach.items():
        if len(targets) >= 2:
            found.add((ExceptionCode.DUPLICATE_LINK, expense_key(code)))
            in_dup_link_c.add(code)
            in_dup_link_r.update(targets)

    pair_of_claim: dict[str, int] = {}
    for c in claims.values():
        if c.code in in_dup_link_c:
            continue
        if c.oa_request_id is not None:
            rid = c.oa_request_id if c.oa_request_id in requests else None
        else:
            rids = by_bxdh.get(c.code, [])
            rid = rids[0] if len(rids) == 1 else None
        if rid is not None and rid not in in_dup_link_r:
            pair_of_claim[c.code] = rid
    pair_of_request = {rid: code for code, rid in pair_of_claim.items()}

    def tolerance(currency: str) -> Decimal:
        return Settings().tolerance(currency)

    ambiguous_pairs = 0
    for r in requests.values():
        if r.rid in in_dup_link_r or r.rid in pair_of_request:
            continue
        if r.state in (ClaimState.SUBMITTED, ClaimState.APPROVED, ClaimState.PAYING, ClaimState.PAID):
            code = ExceptionCode.IN_FLIGHT if r.changed > cutoff else ExceptionCode.MISSING_IN_EXPENSE
            found.add((code, oa_key(r.rid)))
    for c in claims.values():
        if c.code in in_dup_link_c or c.code in pair_of_claim:
            continue
        if c.state not in (ClaimState.DRAFT, ClaimState.VOIDED):
            found.add((ExceptionCode.MISSING_IN_OA, expense_key(c.code)))

    for code, rid in pair_of_claim.items():
        r, c = requests[rid], claims[code]
        key = oa_key(rid)
        oa_state = ClaimState.REJECTED if r.state is ClaimState.WITHDRAWN else r.state
        pwa = c.state in (ClaimState.PAYING, ClaimState.PAID) and r.state not in APPROVED_OR_LATER
        if pwa:
            found.add((ExceptionCode.PAID_WITHOUT_APPROVAL, key))
        if oa_state != c.state and not pwa:
            explained = (
                (r.state is ClaimState.APPROVED and c.state is ClaimState.SUBMITTED)
                or (r.state in (ClaimState.REJECTED, ClaimState.WITHDRAWN) and c.state is ClaimState.SUBMITTED)
                or (r.state is ClaimState.APPROVED and c.state in (ClaimState.PAYING, ClaimState.PAID))
            )
            # "expense ahead in approved..paid" could also cover OA paying & expense paid.
            if r.state is ClaimState.PAYING and c.state is ClaimState.PAID:
                ambiguous_pairs += 1
            if not explained:
                recent = r.changed > cutoff or c.changed > cutoff
                found.add((ExceptionCode.IN_FLIGHT if recent else ExceptionCode.STATUS_MISMATCH, key))
        if ClaimState.VOIDED not in (r.state, c.state) and (
            abs(r.amount - c.amount) > tolerance(c.currency) or r.currency != c.currency
        ):
            found.add((ExceptionCode.AMOUNT_MISMATCH, key))
        if r.claimant != c.claimant:
            found.add((ExceptionCode.EMPLOYEE_MISMATCH, key))
        # "paying" read as the raw expense state would make these paid_without_approval too.
        if c.raw_state == "paying" and c.state is ClaimState.APPROVED and r.state not in APPROVED_OR_LATER:
            ambiguous_pairs += 1

    for r in requests.values():
        key = oa_key(r.rid)
        if r.state is ClaimState.VOIDED:
            continue
        if abs(r.amount - sum((line[0] for line in r.lines), Decimal(0))) > tolerance(r.currency):
            found.add((ExceptionCode.LINES_TOTAL_MISMATCH, key))
        if r.claimant is None or (r.state in OPEN and (r.claimant_status or 0) > 3):
            found.add((ExceptionCode.EMPLOYEE_MISMATCH, key))
    for c in claims.values():
        if c.state is ClaimState.VOIDED:
            continue
        if abs(c.amount - sum((line[0] for line in c.lines), Decimal(0))) > tolerance(c.currency):
            found.add((ExceptionCode.LINES_TOTAL_MISMATCH, expense_key(c.code)))
        inactive = c.state in OPEN and c.claimant is not None and (status_of.get(c.claimant) or 0) > 3
        if c.claimant is None or inactive:
            rid = pair_of_claim.get(c.code)
            found.add((ExceptionCode.EMPLOYEE_MISMATCH, oa_key(rid) if rid is not None else expense_key(c.code)))

    # duplicate_invoice: a linked pair is one claim; live = not voided/rejected/withdrawn.
    units: dict[str, list[tuple[ClaimState, list[tuple[Decimal, str | None, str | None]]]]] = {}
    for r in requests.values():
        units[f"r{r.rid}"] = [(r.state, r.lines)]
    for c in claims.values():
        rid = pair_of_claim.get(c.code)
        units.setdefault(f"r{rid}" if rid is not None else f"c{c.code}", []).append((c.state, c.lines))
    strict: dict[str, set[str]] = defaultdict(set)  # every side of the claim live
    loose: dict[str, set[str]] = defaultdict(set)  # any side live
    for unit, sides in units.items():
        live = [state not in DEAD for state, _ in sides]
        for _, lines in sides:
            for _, code, number in lines:
                if number:
                    key = invoice_key(code, number)
                    if all(live):
                        strict[key].add(unit)
                    if any(live):
                        loose[key].add(unit)
    for key, owners in loose.items():
        if len(owners) >= 2:
            found.add((ExceptionCode.DUPLICATE_INVOICE, key))
    ambiguous_invoices = sum(1 for key, owners in loose.items() if (len(owners) >= 2) != (len(strict[key]) >= 2))
    return Reconciliation({(str(c), k) for c, k in found}, ambiguous_pairs, ambiguous_invoices)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------


def test_answer_key_is_what_the_rules_find(databases: Databases) -> None:
    key = _fill(databases, scale=1500, seed=11)
    result = reference_reconcile(databases, key.as_of, timedelta(seconds=key.grace_seconds))
    missing = key.all_keys() - result.found
    unexpected = result.found - key.all_keys()
    assert (missing, unexpected) == (set(), set())
    assert result.ambiguous_pairs == 0
    assert result.ambiguous_invoices == 0
    assert all(count >= 7 for count in key.counts().values()), key.counts()
    for code, keys in key.fixed_by_sync.items():
        assert set(keys) <= set(key.exceptions[code])
    assert key.fixed_by_sync[ExceptionCode.MISSING_IN_EXPENSE]


def test_without_a_grace_window_in_flight_breaks_are_real_breaks(databases: Databases) -> None:
    settings = Settings(grace=timedelta(0))
    key = _fill(databases, scale=300, seed=5, settings=settings)
    assert key.counts()[ExceptionCode.IN_FLIGHT] == 0
    result = reference_reconcile(databases, key.as_of, timedelta(0))
    assert result.found == key.all_keys()


def test_same_seed_same_rows_and_key_other_seed_other_rows(pg_server, tmp_path: Path) -> None:
    from tests.conftest import make_databases

    runs = []
    for seed in (3, 3, 4):
        dbs, names = make_databases(pg_server)
        try:
            key = _fill(dbs, scale=700, seed=seed)
            runs.append((key, _checksums(dbs), write_answer_key(key, tmp_path / f"{len(runs)}.json")))
        finally:
            for name in names:
                pg_server.drop_database(name)
    (key_a, sums_a, path_a), (key_b, sums_b, path_b), (key_c, sums_c, _) = runs
    assert key_a == key_b
    assert sums_a == sums_b
    strip = lambda p: {k: v for k, v in json.loads(p.read_text(encoding="utf-8")).items() if k != "seconds"}  # noqa: E731
    assert strip(path_a) == strip(path_b)
    assert key_c != key_a
    differing = [t for t in sums_a if sums_a[t] != sums_c[t]]
    assert len(differing) >= 10, differing


@pytest.mark.parametrize("scale", [50, 300])
def test_every_code_is_planted(databases: Databases, scale: int) -> None:
    key = _fill(databases, scale=scale, seed=1)
    assert set(key.counts()) == {c.value for c in RECONCILE_CODES}
    assert all(n >= 1 for n in key.counts().values()), key.counts()
    with databases.engine("oa").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ecology.formtable_main_38")).scalar() == scale


def test_rows_are_consistent_and_well_formed(databases: Databases) -> None:
    stats = LoadStats()
    oa, expense = databases.engine("oa"), databases.engine("expense")
    create_reference_schema(oa, "oa")
    create_reference_schema(expense, "expense")
    key = generate(oa, expense, scale=2000, seed=20260331, as_of=AS_OF, settings=Settings(), stats=stats)
    assert key.claims == 2000
    assert stats.tables["oa.formtable_main_38"].rows == 2000
    with oa.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        # every request of the expense workflow has exactly one form row, and only those do
        assert q("SELECT count(*) FROM ecology.workflow_requestbase r LEFT JOIN ecology.formtable_main_38 f "
                 "USING (requestid) WHERE (r.workflowid = 38) <> (f.id IS NOT NULL)") == [(0,)]  # fmt: skip
        assert q("SELECT count(DISTINCT workflowid) > 1 FROM ecology.workflow_requestbase") == [(True,)]
        per_form = q("SELECT min(n), max(n) FROM (SELECT f.id, count(l.id) n FROM ecology.formtable_main_38 f "
                     "LEFT JOIN ecology.formtable_main_38_dt1 l ON l.mainid = f.id GROUP BY f.id) x")  # fmt: skip
        assert per_form == [(1, 6)]
        # OA texts parse as Asia/Shanghai dates and times, all before as_of
        latest = q("SELECT max(to_timestamp(createdate || ' ' || createtime, 'YYYY-MM-DD HH24:MI:SS')), "
                   "max(to_timestamp(lastoperatedate || ' ' || lastoperatetime, 'YYYY-MM-DD HH24:MI:SS')), "
                   "min(to_timestamp(lastoperatedate || ' ' || lastoperatetime, 'YYYY-MM-DD HH24:MI:SS')) "
                   "FROM ecology.workflow_requestbase")[0]  # fmt: skip
        for value in latest:
            assert datetime.fromisoformat(value.strftime("%Y-%m-%dT%H:%M:%S")).replace(tzinfo=TZ) < AS_OF
        assert (AS_OF - datetime.fromisoformat(latest[2].strftime("%Y-%m-%dT%H:%M:%S")).replace(tzinfo=TZ)).days >= 88
        for date_text, time_text in q("SELECT operatedate, operatetime FROM ecology.workflow_requestlog"):
            datetime.strptime(f"{date_text} {time_text}", "%Y-%m-%d %H:%M:%S")
        for (modified,) in q("SELECT modified FROM ecology.hrmdepartment"):
            datetime.strptime(modified, "%Y-%m-%d %H:%M:%S")
        # every lifecycle stage is present
        assert {r[0] for r in q("SELECT currentnodetype FROM ecology.workflow_requestbase")} == {"0", "1", "2", "3"}
        assert {r[0] for r in q("SELECT logtype FROM ecology.workflow_requestlog")} == {"2", "0", "3", "r", "e", "9"}
        assert {r[0] for r in q("SELECT fkzt FROM ecology.formtable_main_38")} == {None, "支付中", "已支付", "支付失败"}
        assert q("SELECT count(*) > 0 FROM ecology.workflow_requestbase WHERE deleted = 1") == [(True,)]
        assert {r[0] for r in q("SELECT status FROM ecology.hrmresource")} == set(range(8))
        marks = q("SELECT requestmark, requestname FROM ecology.workflow_requestbase WHERE workflowid = 38")
        assert all(re.fullmatch(r"FYBX-20\d\d-\d{6}", m) for m, _ in marks)
        fee = "|".join(FEE_TYPES)
        assert all(re.fullmatch(rf"({fee})报销-\w{{2,4}}-20\d\d-\d\d-\d\d", n) for _, n in marks)
        for fpdm, fphm in q("SELECT fpdm, fphm FROM ecology.formtable_main_38_dt1"):
            _assert_invoice(fpdm, fphm)
        for (num,) in q("SELECT certificatenum FROM ecology.hrmresource WHERE certificatenum IS NOT NULL"):
            assert _id_check_ok(num), num
        assert q("SELECT count(*) FROM ecology.formtable_main_38 WHERE bxje <> round(bxje, 2) OR bxje <= 0") == [(0,)]
    with expense.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()  # noqa: E731
        states = {r[0] for r in q("SELECT state FROM ekb.flow WHERE form_type = 'expense'")}
        assert states == {"draft", "pending", "approving", "rejected", "paying", "paid", "archived", "nullify"}
        assert {r[0] for r in q("SELECT form_type FROM ekb.flow")} == {"expense", "loan", "requisition"}
        assert {r[0] for r in q("SELECT status FROM ekb.payment")} == {"PROCESSING", "SUCCESS", "FAILURE"}
        codes = q("SELECT code FROM ekb.flow WHERE form_type = 'expense'")
        assert all(re.fullmatch(r"B2\d\d{6,}", c) for (c,) in codes)
        assert all(re.fullmatch(r"\d{16,19}", a) for (a,) in q("SELECT payee_account FROM ekb.payment"))
        per_claim = q(
            "SELECT min(n), max(n) FROM (SELECT f.id, count(d.id) n FROM ekb.flow f JOIN ekb.flow_detail d "
            "ON d.flow_id = f.id WHERE f.form_type = 'expense' GROUP BY f.id) x"
        )
        assert per_claim[0][0] >= 1
        assert per_claim[0][1] <= 6
        assert q("SELECT count(*) FROM ekb.flow f WHERE form_type = 'expense' AND NOT EXISTS "
                 "(SELECT 1 FROM ekb.flow_detail d WHERE d.flow_id = f.id)") == [(0,)]  # fmt: skip
        for code, number in q("SELECT invoice_code, invoice_number FROM ekb.flow_detail"):
            _assert_invoice(code, number)
        assert q("SELECT count(*) FROM ekb.flow WHERE update_time > :t OR create_time > update_time"
                 .replace(":t", f"'{AS_OF.isoformat()}'")) == [(0,)]  # fmt: skip
        recent = q(f"SELECT count(*) FROM ekb.flow WHERE update_time > '{(AS_OF - timedelta(minutes=30)).isoformat()}'")
        assert recent[0][0] >= 1
        # the flow_log sequence was moved past the loaded ids: a new row does not collide
        conn.execute(sa.text("INSERT INTO ekb.flow_log (flow_id, action, time) VALUES ('x', 'claimsync.sync', now())"))
        linked = q("SELECT count(*) FROM ekb.flow WHERE oa_request_id IS NOT NULL AND form_type = 'expense'")[0][0]
        assert linked > 1500
    # expense staff mirror OA employees (same codes) apart from new hires
    with oa.connect() as conn:
        workcodes = {r[0] for r in conn.execute(sa.text("SELECT workcode FROM ecology.hrmresource"))}
    with expense.connect() as conn:
        staff_codes = {r[0] for r in conn.execute(sa.text("SELECT code FROM ekb.staff"))}
    assert staff_codes < workcodes
    assert 1 <= len(workcodes - staff_codes) <= len(workcodes) // 20
    oa.dispose()
    expense.dispose()


def _assert_invoice(code: str | None, number: str | None) -> None:
    if number is None:
        assert code is None
    elif code is None:
        assert re.fullmatch(r"\d{20}", number), number
    else:
        assert re.fullmatch(r"\d{10}|\d{12}", code), code
        assert re.fullmatch(r"\d{8}", number), number


def _id_check_ok(number: str) -> bool:
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(d) * w for d, w in zip(number[:17], weights, strict=True))
    return len(number) == 18 and "10X98765432"[total % 11] == number[17]


def test_generate_refuses_a_schema_with_rows(databases: Databases) -> None:
    from claimsync.errors import ConfigError

    _fill(databases, scale=20, seed=1)
    with pytest.raises(ConfigError, match="not empty"):
        generate(
            databases.engine("oa"), databases.engine("expense"), scale=20, seed=1, as_of=AS_OF, settings=Settings()
        )


def test_cli_demo_empty_creates_both_schemas_with_no_rows(databases: Databases, capsys) -> None:
    urls = ["--oa-url", databases.oa_url, "--expense-url", databases.expense_url, "--state-url", databases.state_url]
    assert main(["demo", "--empty", *urls]) == 0
    assert "no rows" in capsys.readouterr().out
    for system, schema, tables in (("oa", "ecology", OA_TABLES), ("expense", "ekb", EXPENSE_TABLES)):
        engine = databases.engine(system)
        with engine.connect() as conn:
            for table in tables:
                assert conn.execute(sa.text(f"SELECT count(*) FROM {schema}.{table}")).scalar() == 0
        engine.dispose()


def test_cli_demo_generates_and_prints_the_counts(databases: Databases, capsys, tmp_path: Path) -> None:
    urls = ["--oa-url", databases.oa_url, "--expense-url", databases.expense_url, "--state-url", databases.state_url]
    args = [
        "demo",
        "--scale",
        "200",
        "--no-run",
        "--seed",
        "9",
        "--as-of",
        "2026-03-31T12:00:00",
        "--out",
        str(tmp_path),
    ]
    assert main([*args, *urls]) == 0
    out = capsys.readouterr().out
    key = load_answer_key(tmp_path / "answer_key.json")
    assert key.scale == 200
    assert key.as_of == AS_OF
    assert "generated 200 OA requests" in out
    for code, count in key.counts().items():
        assert re.search(rf"^\s+{code}\s+{count}$", out, re.MULTILINE), code
    with databases.engine("oa").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ecology.formtable_main_38")).scalar() == 200
