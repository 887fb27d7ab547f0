"""The demo generator without a database: plan, answer key, rows, identifiers."""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from claimsync.config import Settings
from claimsync.demo import AnswerKey, build_plan, ids, iter_tables, load_answer_key, table_csv, write_answer_key
from claimsync.demo.chunk import build_chunk
from claimsync.demo.org import id_card_number
from claimsync.demo.scenarios import SCENARIOS, VARIANTS, Flow, Payment, Scenario
from claimsync.errors import ConfigError
from claimsync.rules import FKZT_PAID, FKZT_PAYING, RECONCILE_CODES, ClaimState, ExceptionCode

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def _key(scale: int, seed: int = 1, settings: Settings | None = None) -> AnswerKey:
    return build_plan(scale=scale, seed=seed, as_of=AS_OF, settings=settings or Settings()).answer_key(0.0)


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    assert _key(500, seed=7) == _key(500, seed=7)
    assert _key(500, seed=7).exceptions != _key(500, seed=8).exceptions


@pytest.mark.parametrize("scale", [50, 300, 5000])
def test_every_reconcile_code_is_planted(scale: int) -> None:
    counts = _key(scale).counts()
    assert list(counts) == [c.value for c in RECONCILE_CODES]
    assert all(n >= 1 for n in counts.values()), counts
    if scale >= 300:
        assert all(n >= max(2, scale // 200) for n in counts.values()), counts


def test_tiny_scales_plant_what_fits() -> None:
    key = _key(1)
    assert key.counts()[ExceptionCode.MISSING_IN_OA] >= 1  # needs no OA request
    assert sum(key.counts().values()) == key.counts()[ExceptionCode.MISSING_IN_OA]


def test_without_a_grace_window_in_flight_breaks_count_as_what_they_are() -> None:
    normal, none = _key(1000), _key(1000, settings=Settings(grace=timedelta(0)))
    assert none.counts()[ExceptionCode.IN_FLIGHT] == 0
    assert sum(none.counts().values()) == sum(normal.counts().values())
    moved = normal.counts()[ExceptionCode.IN_FLIGHT]
    grown = (
        none.counts()[ExceptionCode.MISSING_IN_EXPENSE]
        + none.counts()[ExceptionCode.STATUS_MISMATCH]
        - normal.counts()[ExceptionCode.MISSING_IN_EXPENSE]
        - normal.counts()[ExceptionCode.STATUS_MISMATCH]
    )
    assert grown == moved


def test_answer_key_round_trips_and_ignores_timing(tmp_path: Path) -> None:
    key = _key(300)
    path = write_answer_key(key, tmp_path / "key.json")
    text = path.read_text(encoding="utf-8")
    assert "OA request" in text  # details are readable, not escaped
    loaded = load_answer_key(path)
    assert loaded == key
    assert AnswerKey.from_dict(key.to_dict()) == key
    assert loaded.counts() == key.counts()
    assert set(key.fixed_by_sync[ExceptionCode.MISSING_IN_EXPENSE]) <= set(
        key.exceptions[ExceptionCode.MISSING_IN_EXPENSE]
    )
    for code, keys in key.exceptions.items():
        assert list(keys) == sorted(keys)
        prefix = {"duplicate_invoice": "inv:"}.get(code)
        assert all(k.startswith(prefix or ("oa:", "exp:")) for k in keys), code
        assert set(key.details[code]) == set(keys)


def test_a_bad_answer_key_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"seed": 1}', encoding="utf-8")
    with pytest.raises(ConfigError, match="not a claimsync answer key"):
        load_answer_key(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="no answer key"):
        load_answer_key(tmp_path / "missing.json")


def test_scale_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        build_plan(scale=0, seed=1, as_of=AS_OF, settings=Settings())
    with pytest.raises(ConfigError):
        build_plan(scale=3_000_001, seed=1, as_of=AS_OF, settings=Settings())


def test_chunks_are_reproducible_and_rows_consistent() -> None:
    plan = build_plan(scale=1200, seed=3, as_of=AS_OF, settings=Settings())
    first = build_chunk(plan, 0, 1200, 0)
    again = build_chunk(plan, 0, 1200, 0)
    for a, b in zip(first, again, strict=True):
        assert {k: table_csv(v) for k, v in a.items()} == {k: table_csv(v) for k, v in b.items()}
    tables: dict[str, list[pa.Table]] = {}
    for system, name, table in iter_tables(plan):
        tables.setdefault(f"{system}.{name}", []).append(table)
    rows = {name: pa.concat_tables(parts) for name, parts in tables.items()}
    form, lines = rows["oa.form"], rows["oa.form_lines"]
    assert form.num_rows == 1200
    per_form = Counter(lines.column("mainid").to_pylist())
    assert set(per_form) == set(form.column("id").to_pylist())
    assert 1 <= min(per_form.values()) <= max(per_form.values()) <= 6
    for name, table in rows.items():
        key = "requestid" if name == "oa.workflow_requestbase" else "logid" if "requestlog" in name else "id"
        values = table.column(key).to_pylist()
        assert len(values) == len(set(values)), name
    flows = rows["expense.flow"]
    assert len(set(flows.column("code").to_pylist())) == flows.num_rows
    linked = [v for v in flows.column("oa_request_id").to_pylist() if v is not None]
    assert len(linked) == len(set(linked))


def test_system_ids_are_unique_well_formed_and_time_ordered() -> None:
    values = ids.system_ids(ids.KIND_FLOW, np.arange(200_000)).to_pylist()
    assert len(set(values)) == len(values)
    assert all(re.fullmatch(r"ID01[0-9A-Za-z]{10}", v) for v in values[:1000])
    assert values == sorted(values)
    assert set(values).isdisjoint(ids.system_ids(ids.KIND_DETAIL, np.arange(200_000)).to_pylist())


def test_invoice_numbers_are_unique_and_shaped() -> None:
    serial = np.arange(1, 300_000, dtype=np.int64)
    for kind, code_re, number_re in (
        (ids.INVOICE_CODE10, r"\d{10}", r"\d{8}"),
        (ids.INVOICE_CODE12, r"\d{12}", r"\d{8}"),
        (ids.INVOICE_FULL_E, None, r"\d{20}"),
    ):
        code, number = ids.invoice_texts(serial, np.full(len(serial), kind, dtype=np.int8), 26)
        numbers = number.to_pylist()
        assert len(set(numbers)) == len(numbers)
        assert all(re.fullmatch(number_re, n) for n in numbers[:2000])
        codes = code.to_pylist()
        assert all(c is None if code_re is None else re.fullmatch(code_re, c) for c in codes[:2000])
    code, number = ids.invoice_texts([5], [ids.INVOICE_NONE], 26)
    assert code.to_pylist() == [None]
    assert number.to_pylist() == [None]


def test_money_is_exact_text() -> None:
    assert ids.money([12345, 5, 0, 10**12]).to_pylist() == ["123.45", "0.05", "0.00", "10000000000.00"]


def test_id_card_check_character() -> None:
    # GB 11643 example: 11010519491231002X
    from datetime import date

    assert id_card_number("110105", date(1949, 12, 31), 2) == "11010519491231002X"


def _oa_state(sc: Scenario) -> ClaimState:
    """rules.py's OA lifecycle, applied to a scenario's stored fields."""
    if sc.deleted:
        return ClaimState.VOIDED
    if sc.cnt == "3":
        return {FKZT_PAYING: ClaimState.PAYING, FKZT_PAID: ClaimState.PAID}.get(sc.fkzt or "", ClaimState.APPROVED)
    if sc.cnt in ("1", "2"):
        return ClaimState.SUBMITTED
    last = sc.a2_log or sc.a1_log
    return {"3": ClaimState.REJECTED, "r": ClaimState.WITHDRAWN}.get(last, ClaimState.DRAFT)


def _expense_state(sc: Scenario) -> ClaimState | None:
    if sc.flow is not Flow.REAL:
        return None
    if sc.state == "paying":
        return ClaimState.PAYING if sc.payment in (Payment.PROCESSING, Payment.SUCCESS) else ClaimState.APPROVED
    return {
        "draft": ClaimState.DRAFT, "pending": ClaimState.SUBMITTED, "approving": ClaimState.SUBMITTED,
        "rejected": ClaimState.REJECTED, "nullify": ClaimState.VOIDED, "paid": ClaimState.PAID,
        "archived": ClaimState.PAID,
    }[sc.state]  # fmt: skip


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario_states_follow_the_rules(scenario: Scenario) -> None:
    assert _oa_state(scenario) == scenario.oa_canonical
    assert _expense_state(scenario) == scenario.expense_canonical


def test_clean_scenarios_raise_nothing_by_state() -> None:
    approved_or_later = {ClaimState.APPROVED, ClaimState.PAYING, ClaimState.PAID}
    for sc in SCENARIOS:
        if sc.name.startswith("p_") or sc.expense_canonical is None:
            continue
        oa, exp = sc.oa_canonical, sc.expense_canonical
        assert not (exp in (ClaimState.PAYING, ClaimState.PAID) and oa not in approved_or_later), sc.name
        same = (ClaimState.REJECTED if oa is ClaimState.WITHDRAWN else oa) == exp
        explained = (
            (oa is ClaimState.APPROVED and exp is ClaimState.SUBMITTED)
            or (oa in (ClaimState.REJECTED, ClaimState.WITHDRAWN) and exp is ClaimState.SUBMITTED)
            or (oa is ClaimState.APPROVED and exp in (ClaimState.PAYING, ClaimState.PAID))
        )
        assert same or explained, sc.name
        assert sc.name.startswith("x_") == (not same), sc.name


def test_every_code_has_a_variant_and_every_variant_one_code() -> None:
    planted = {v.code for v in VARIANTS if v.code is not None}
    assert planted == set(RECONCILE_CODES)
    names = [v.name for v in VARIANTS]
    assert len(names) == len(set(names))
