"""The GX suites in expectations/: each loads and round-trips, and each rule catches what it names.

Every table below is a small canonical frame; the ``expect`` column names the checks that row
must fail (empty: the row is valid). Each table runs twice: GX alone on every row, and the
vectorised screen with GX confirming what it flagged (claimsync.quality_engine) — both must
give exactly the expected failures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from claimsync.config import Settings
from claimsync.quality import lines_sum_mostly_for, validation_view
from claimsync.quality_engine import GxValidator, SuiteEvaluation, evaluate
from claimsync.quality_rules import ALL_SUITES, SOURCE_SUITES, load_suite
from claimsync.resources import expectations_dir
from claimsync.rules import FORWARD_ORDER
from tests.quality_tables import MODEL_COLUMNS, frame, rows

AS_OF = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
LATEST = pd.Timestamp("2026-11-30 00:00:00", tz="UTC")  # what validate_sources derives from as_of and now
SETTINGS = Settings()


@pytest.fixture(scope="module")
def gx() -> GxValidator:
    return GxValidator()


def run(
    gx: GxValidator, suite: str, data: pd.DataFrame, mode: str, *, min_row_count: int = 0, latest: Any = LATEST
) -> SuiteEvaluation:
    view = validation_view(suite, data, SETTINGS)
    parameters = {
        "latest_valid_time": latest,
        "min_row_count": min_row_count,
        "lines_sum_mostly": lines_sum_mostly_for(suite, len(data)),
    }
    return evaluate(load_suite(suite), view, parameters, lambda: gx, gx_full_rows=0 if mode == "screen" else 10**9)


def failures_by_row(evaluation: SuiteEvaluation, n: int) -> list[set[str]]:
    found: list[set[str]] = [set() for _ in range(n)]
    for outcome in evaluation.outcomes:
        for position in outcome.failing.tolist():
            found[position].add(outcome.rule.check)
    return found


def check_table(gx: GxValidator, suite: str, table: str, mode: str) -> SuiteEvaluation:
    given = rows(table)
    expected = [set(filter(None, (r.pop("expect") or "").split())) for r in given]
    kind = suite
    data = frame(kind, given)
    evaluation = run(gx, suite, data, mode)
    assert failures_by_row(evaluation, len(given)) == expected
    assert [o.rule.check for o in evaluation.outcomes if o.stops] == []
    return evaluation


MODES = ["gx", "screen"]

# --- loading -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_SUITES)
def test_suite_loads_and_round_trips_through_gx(name: str) -> None:
    import great_expectations as gxlib

    document = json.loads((expectations_dir() / f"{name}.json").read_text(encoding="utf-8"))
    suite = gxlib.ExpectationSuite(**document)
    assert suite.name == name
    assert suite.to_json_dict() == document
    spec = load_suite(name)
    assert len(spec.rules) == len(document["expectations"]) > 0
    for rule in spec.rules:
        assert rule.level in ("row", "table")
        assert rule.reason
        assert rule.check


def test_every_suite_file_is_a_known_suite_named_after_its_stem() -> None:
    stems = sorted(p.stem for p in expectations_dir().glob("*.json"))
    assert stems == sorted(ALL_SUITES)
    for stem in stems:
        assert json.loads((expectations_dir() / f"{stem}.json").read_text(encoding="utf-8"))["name"] == stem


@pytest.mark.parametrize("suite", sorted(SOURCE_SUITES))
def test_source_suites_require_the_model_columns(suite: str) -> None:
    columns = load_suite(suite).rule("columns_present").kwargs["column_set"]
    assert columns == list(MODEL_COLUMNS[suite])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suite", sorted(SOURCE_SUITES))
def test_valid_default_rows_pass_every_check(gx: GxValidator, suite: str, mode: str) -> None:
    evaluation = run(gx, suite, frame(suite, count=5), mode, min_row_count=5)
    assert [o.rule.check for o in evaluation.outcomes if not o.success] == []
    # Only checks of a *_src column the frame does not carry are skipped.
    assert all(any(c.endswith("_src") for c in o.rule.columns) for o in evaluation.outcomes if o.skipped)


# --- oa_claims -----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_oa_claims_rules(gx: GxValidator, mode: str) -> None:
    check_table(
        gx,
        "oa_claims",
        """
        request_id | amount_cents | amount_cents_src | currency | state     | fkzt | fkrq       | fkrq_src   | created_at          | created_at_src      | request_mark            | expect
        1001       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000001        |
        1002       | -500         | -5.00            | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000002        | amount_cents_not_negative
        1003       | <NA>         | 12.345           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000003        | amount_cents_present amount_cents_two_decimals
        1004       | 12345        | 123.450          | USD      | paid      | 已支付 | 2026-03-02 | 2026-03-02 | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000004        |
        1005       | 12345        | 123.45           | XYZ      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000005        | currency_known
        1006       | 12345        | 123.45           | CNY      | bogus     |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000006        | state_known
        1007       | 12345        | 123.45           | CNY      | <NA>      | 付了 |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000007        | state_present fkzt_known
        1008       | 12345        | 123.45           | CNY      | approved  |      | <NA>       | 2026-02-30 | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000008        | fkrq_parseable
        1009       | 12345        | 123.45           | CNY      | approved  |      |            |            | <NA>                | 2026-02-28 25:61:00 | FYBX-2026-000009        | created_at_present created_at_parseable
        1010       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2099-01-01 09:00:00 | 2099-01-01 09:00:00 | FYBX-2026-000010        | created_at_not_in_future
        <NA>       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000011        | request_id_present
        1012       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000012        | request_id_unique
        1012       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000013        | request_id_unique
        1014       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | '); DROP TABLE ekb.flow;-- |
        1015       | 12345        | 123.45           | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | 差旅费报销-张伟-😀       |
        1016       | <NA>         | 1e2              | CNY      | approved  |      |            |            | 2026-02-28 09:00:00 | 2026-02-28 09:00:00 | FYBX-2026-000016        | amount_cents_present amount_cents_two_decimals
        """,  # noqa: E501
        mode,
    )


@pytest.mark.parametrize("mode", MODES)
def test_oa_claims_text_must_be_clean_and_fit(gx: GxValidator, mode: str) -> None:
    data = frame("oa_claims", count=5)
    data["request_mark"] = pd.Series(["ok", "bad\x00nul", "x" * 101, "bell\x07", "mojibake \ufffd"], dtype="str")
    evaluation = run(gx, "oa_claims", data, mode)
    assert failures_by_row(evaluation, 5) == [
        set(),
        {"request_mark_clean_text"},
        {"request_mark_fits"},
        {"request_mark_clean_text"},
        {"request_mark_clean_text"},
    ]


@pytest.mark.parametrize("mode", MODES)
def test_lone_surrogates_and_bytes_are_repaired_and_rejected(gx: GxValidator, mode: str) -> None:
    data = frame("oa_claims", count=3)
    data["pzh"] = pd.Series(["V-1", "V-\ud800", b"V-\xff"], dtype="object")
    evaluation = run(gx, "oa_claims", data, mode)
    assert failures_by_row(evaluation, 3) == [set(), {"pzh_clean_text"}, {"pzh_clean_text"}]


@pytest.mark.parametrize("mode", MODES)
def test_employee_status_outside_0_to_7(gx: GxValidator, mode: str) -> None:
    data = frame("oa_claims", "employee_status\n3\n8\n<NA>")
    assert failures_by_row(run(gx, "oa_claims", data, mode), 3) == [set(), {"employee_status_known"}, set()]


@pytest.mark.parametrize("mode", MODES)
def test_row_count_collapse_is_a_table_failure(gx: GxValidator, mode: str) -> None:
    evaluation = run(gx, "oa_claims", frame("oa_claims", count=3), mode, min_row_count=4)
    outcome = evaluation.outcome("row_count_collapse")
    assert outcome.stops
    assert outcome.observed == 3
    assert len(outcome.failing) == 0
    assert run(gx, "oa_claims", frame("oa_claims", count=3), mode, min_row_count=3).success


@pytest.mark.parametrize("mode", MODES)
def test_lines_not_adding_up_in_bulk_stop_but_a_few_do_not(gx: GxValidator, mode: str) -> None:
    def lines_sum(data: pd.DataFrame) -> Any:
        return run(gx, "oa_claims", data, mode).outcome("lines_sum_within_tolerance")

    # A small batch may hold up to 10 genuine line-total breaks (reconcile exceptions, not a data problem).
    data = frame("oa_claims", count=40)
    data.loc[0:9, "lines_total_cents"] = 100  # 10 of 40
    assert lines_sum(data).success
    data.loc[10, "lines_total_cents"] = 100  # 11 of 40: the lines extraction is broken
    outcome = lines_sum(data)
    assert outcome.stops
    assert len(outcome.failing) == 0  # table-level: nothing is quarantined for it
    # A big batch: up to 5%.
    data = frame("oa_claims", count=400)
    data.loc[0:19, "lines_total_cents"] = 100  # 20 of 400 (5%)
    assert lines_sum(data).success
    data.loc[20, "lines_total_cents"] = 100  # 21 of 400
    assert lines_sum(data).stops


def test_lines_tolerance_comes_from_the_settings(gx: GxValidator) -> None:
    data = frame("expense_claims", "currency | lines_total_cents\nUSD | 12344\nUSD | 12344\nUSD | 12344")
    view = validation_view("expense_claims", data, Settings.from_env({"CLAIMSYNC_TOLERANCE": "USD=0.01"}))
    assert view["dq_lines_excess_cents"].tolist() == [0, 0, 0]
    view = validation_view("expense_claims", data, SETTINGS)
    assert view["dq_lines_excess_cents"].tolist() == [1, 1, 1]


@pytest.mark.parametrize("mode", MODES)
def test_missing_canonical_column_stops_and_optional_src_columns_are_skipped(gx: GxValidator, mode: str) -> None:
    data = frame("oa_claims", count=2).drop(columns=["state", "fkrq_src"])
    evaluation = run(gx, "oa_claims", data, mode)
    assert evaluation.outcome("columns_present").stops
    assert evaluation.outcome("fkrq_parseable").skipped
    assert evaluation.outcome("state_known").skipped


# --- expense_claims ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_expense_claims_rules(gx: GxValidator, mode: str) -> None:
    check_table(
        gx,
        "expense_claims",
        """
        flow_id   | claim_code | oa_request_id | amount_cents | pay_cents | pay_cents_src | raw_state | state     | approve_time        | voucher_no | expect
        F01       | B26000001  | 1001          | 12345        | 12345     | 123.45        | paying    | approved  | 2026-03-01 10:00:00 |            |
        F02       | <NA>       | 1002          | 12345        | 12345     | 123.45        | paying    | approved  | 2026-03-01 10:00:00 |            | claim_code_present
        F03       | B26000003  | 0             | 12345        | 12345     | 123.45        | paying    | approved  | 2026-03-01 10:00:00 |            | oa_request_id_positive
        F04       | B26000004  | 1004          | 12345        | <NA>      | 1.999         | paying    | approved  | 2026-03-01 10:00:00 |            | pay_cents_present pay_cents_two_decimals
        F05       | B26000005  | 1005          | 12345        | 12345     | 123.45        | teleport  | <NA>      | 2026-03-01 10:00:00 |            | raw_state_known state_present
        F06       | B26000006  | 1006          | 12345        | 12345     | 123.45        | paying    | approved  | 2098-03-01 10:00:00 |            | approve_time_not_in_future flow_id_unique
        F06       | B26000007  | 1007          | 12345        | 12345     | 123.45        | paying    | approved  | 2026-03-01 10:00:00 |            | flow_id_unique claim_code_unique
        F08       | B26000007  | 1008          | 12345        | 12345     | 123.45        | paying    | approved  | 2026-03-01 10:00:00 | V-01       | claim_code_unique
        F09       | B26000009  |               | 12345        | 12345     | 123.45        | draft     | draft     |                     |            |
        F10       | B2600001012345678901234567890123456789012345 | 1010 | 12345 | 12345 | 123.45 | paying | approved | 2026-03-01 10:00:00 | | claim_code_fits
        """,  # noqa: E501
        mode,
    )


def test_claim_code_unique_flags_every_copy(gx: GxValidator) -> None:
    data = frame("expense_claims", "claim_code\nB1\nB1\nB2\nB1")
    assert failures_by_row(run(gx, "expense_claims", data, "gx"), 4) == [
        {"claim_code_unique"},
        {"claim_code_unique"},
        set(),
        {"claim_code_unique"},
    ]


# --- lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suite", ["oa_lines", "expense_lines"])
def test_lines_rules(gx: GxValidator, suite: str, mode: str) -> None:
    check_table(
        gx,
        suite,
        """
        claim_ref | seq | fee_type | amount_cents | amount_cents_src | invoice_code  | invoice_number        | invoice_date | invoice_date_src | expect
        R1        | 1   | 差旅费   | 12345        | 123.45           | 3100201130    | 12345678              | 2026-02-27   | 2026-02-27       |
        R1        | 2   | 餐费     | 100          | 1.00             | 031002011301  | 87654321              | 2026-02-27   | 2026-02-27       |
        R1        | 3   | 交通费   | 100          | 1.00             |               | 26312000000012345678  |              |                  |
        R1        | 4   | 住宿费   | 100          | 1.00             |               |                       |              |                  |
        R1        | 5   | 买游艇   | 100          | 1.00             |               |                       |              |                  | fee_type_known
        R1        | 6   | 餐费     | 100          | 1.00             | 3100201130    | 26312000000012345678  |              |                  | invoice_shape
        R1        | 7   | 餐费     | 100          | 1.00             |               | 12345678              |              |                  | invoice_shape
        R1        | 8   | 餐费     | 100          | 1.00             | 31002011      | 12345678              |              |                  | invoice_shape
        R1        | 9   | 餐费     | 100          | 1.00             | 3100201130    | 1234567X              |              |                  | invoice_shape
        R1        | 10  | 餐费     | 100          | 1.00             | 3100201130    | 12345678              | <NA>         | 2026-13-01       | invoice_date_parseable
        R1        | 11  | 餐费     | 100          | 1.00             | 3100201130    | 12345678              | 2099-01-01   | 2099-01-01       | invoice_date_not_in_future
        R1        | 12  | 餐费     | -1           | -0.01            |               |                       |              |                  | amount_cents_not_negative
        R2        | 1   | 餐费     | 100          | 1.00             |               |                       |              |                  | line_unique
        R2        | 1   | 餐费     | 100          | 1.00             |               |                       |              |                  | line_unique
        <NA>      | 1   | <NA>     | 100          | 1.00             |               |                       |              |                  | claim_ref_present fee_type_present
        """,  # noqa: E501
        mode,
    )


# --- payments, employees, departments ------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_payments_rules(gx: GxValidator, mode: str) -> None:
    check_table(
        gx,
        "expense_payments",
        """
        payment_id | claim_code | status     | payee_name | payee_account_masked | amount_cents | expect
        P1         | B1         | SUCCESS    | 张伟       | 6222 **** **** 1234  | 100          |
        P2         | B1         | DONE       | 张伟       | 6222 **** **** 1234  | 100          | status_known
        P3         | B1         | FAILURE    | 张伟       | 6222021234567891234  | 100          | payee_account_masked
        P4         | <NA>       | PROCESSING | <NA>       | 6222 **** **** 1234  | 100          | claim_code_present payee_name_present payment_id_unique
        P4         | B1         | SUCCESS    | 张伟       | 6222 **** **** 1234  | <NA>         | payment_id_unique amount_cents_present
        """,  # noqa: E501
        mode,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suite", ["oa_employees", "expense_employees"])
def test_employee_rules(gx: GxValidator, suite: str, mode: str) -> None:
    status = "1" if suite == "oa_employees" else "<NA>"
    bad_status = "9" if suite == "oa_employees" else "<NA>"
    expect_bad_status = "status_known" if suite == "oa_employees" else ""
    expect_no_status = "status_present" if suite == "oa_employees" else ""
    check_table(
        gx,
        suite,
        f"""
        employee_code | name     | active | status        | email              | expect
        E1            | 张伟     | true   | {status}      | zw@example.com     | employee_code_unique
        E2            | <NA>     | true   | {status}      |                    | name_present
        E3            | 李娜     | <NA>   | {status}      |                    | active_present
        E4            | 王芳     | false  | {bad_status}  |                    | {expect_bad_status}
        E5            | 刘洋     | true   | <NA>          |                    | {expect_no_status}
        E6            | Robert'); DROP TABLE ekb.staff;-- | true | {status} | |
        E7            | 陈静     | true   | {status}      | a@b.c{"x" * 200}   | email_fits
        E1            | 杨磊     | true   | {status}      |                    | employee_code_unique
        """,
        mode,
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("suite", ["oa_departments", "expense_departments"])
def test_department_rules(gx: GxValidator, suite: str, mode: str) -> None:
    check_table(
        gx,
        suite,
        """
        department_code | name    | parent_code | active | expect
        FIN-01          | 财务部  |             | true   |
        FIN-02          | 会计组  | FIN-01      | true   |
        <NA>            | 无编码  | FIN-01      | true   | department_code_present
        FIN-03          |         | FIN-01      | false  | name_present
        FIN-04          | 审计部  | FIN-01      | <NA>   | active_present
        """,
        mode,
    )


# --- write_delta ---------------------------------------------------------------------------


def test_delta_lifecycle_ranks_follow_the_forward_order() -> None:
    from claimsync.quality import lifecycle_rank

    order = ["draft", "approving", "paying", "paid"]
    ranks = [lifecycle_rank({"state": s}) for s in order]
    assert ranks == sorted(ranks)
    assert ranks[0] == FORWARD_ORDER[next(iter(FORWARD_ORDER))]
    assert lifecycle_rank({"fkzt": None}) < lifecycle_rank({"fkzt": "支付中"}) < lifecycle_rank({"fkzt": "已支付"})
    assert lifecycle_rank({"state": "rejected"}) != lifecycle_rank({"state": "rejected"})  # NaN: an exit
    assert lifecycle_rank({"name": "张伟"}) != lifecycle_rank({"name": "张伟"})
