"""Extraction from real PostgreSQL: full and windowed scopes, counterparts by key, buckets, index use."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy as sa
from bench._fill import fill

from claimsync.config import Settings
from claimsync.db import raw_cursor
from claimsync.errors import ClaimsyncError, ConfigError
from claimsync.extract import _OA_CLAIM_SCOPE, Window, _render, _scope, extract_raw, extract_sides
from claimsync.reconcile import merge_results, reconcile
from claimsync.refschema import create_reference_schema
from tests.conftest import Databases

TZ = ZoneInfo("Asia/Shanghai")
SETTINGS = Settings()
WINDOW = Window(datetime(2026, 3, 31, 12, 0, tzinfo=TZ), datetime(2026, 3, 31, 13, 0, tzinfo=TZ))
OLD, INSIDE = ("2026-03-01", "09:00:00"), ("2026-03-31", "12:30:00")
# A window of the generated data of the ``filled`` fixture.
WINDOW_OF_FILLED = Window(datetime(2026, 1, 2, 0, 0, tzinfo=TZ), datetime(2026, 1, 2, 6, 0, tzinfo=TZ))

OA_ROWS = """
INSERT INTO ecology.hrmdepartment VALUES (1, 'D1', '财务部', NULL, NULL, '2026-01-01 00:00:00');
INSERT INTO ecology.hrmresource VALUES (1, 'E1', '张伟', 1, 1, NULL, '13800000000', '110101199003074518',
                                        '2026-01-01', '00:00:00');
INSERT INTO ecology.workflow_requestbase VALUES
 (1, 38, 'FYBX-1', 't', 1, '2026-03-01', '09:00:00', '3', '归档', 1, :in_d, :in_t, 0),
 (2, 38, 'FYBX-2', 't', 1, '2026-03-01', '09:00:00', '3', '归档', 1, :old_d, :old_t, 0),
 (3, 38, 'FYBX-3', 't', 1, '2026-03-01', '09:00:00', '1', '审批', 1, :in_d, :in_t, 0),
 (4, 38, 'FYBX-4', 't', 1, '2026-03-01', '09:00:00', '0', '退回', 1, :old_d, :old_t, 0),
 (5, 38, 'FYBX-5', 't', 1, '2026-03-01', '09:00:00', '3', '归档', 1, :old_d, :old_t, 0),
 (9, 99, 'OTHER-9', 't', 1, '2026-03-01', '09:00:00', '3', '归档', 1, :in_d, :in_t, 0);
INSERT INTO ecology.workflow_requestlog VALUES
 (1, 1, 1, '2', 1, '2026-03-01', '09:00:00', NULL), (2, 1, 2, '0', 1, '2026-03-02', '10:00:00', '同意'),
 (3, 4, 1, '2', 1, '2026-03-01', '09:00:00', NULL), (4, 4, 2, '3', 1, '2026-03-02', '10:00:00', '退回'),
 (5, 4, 2, '9', 1, '2026-03-03', '10:00:00', '批注');
INSERT INTO ecology.formtable_main_38 VALUES
 (1, 1, 'B1', 1, 1, 1200.50, 'CNY', NULL, NULL, NULL),
 (2, 2, 'B2', 1, 1, 300.00, 'CNY', '已支付', '2026-03-05', 'PZ2'),
 (3, 3, 'B3', 1, 1, 10.00, 'CNY', NULL, NULL, NULL),
 (4, 4, NULL, 1, 1, 20.00, 'CNY', NULL, NULL, NULL),
 (5, 5, NULL, 1, 1, 30.00, 'CNY', NULL, NULL, NULL),
 (9, 9, 'B9', 1, 1, 90.00, 'CNY', NULL, NULL, NULL);
INSERT INTO ecology.formtable_main_38_dt1 VALUES
 (1, 1, '差旅费', 1000.50, NULL, '26442000000000000001', '2026-03-01', NULL),
 (2, 1, '餐费', 200.00, '044001900111', '00000001', '2026-03-01', NULL),
 (3, 9, '餐费', 90.00, NULL, '26442000000000000009', '2026-03-01', NULL);
"""

EXPENSE_ROWS = """
INSERT INTO ekb.department VALUES ('d1', 'D1', '财务部', NULL, true, :old);
INSERT INTO ekb.staff VALUES ('s1', 'E1', '张伟', 'd1', NULL, '13800000000', true, :old);
INSERT INTO ekb.flow (id, code, form_type, title, submitter_id, department_id, sum_amount, pay_money, currency,
                      state, oa_request_id, create_time, submit_time, update_time) VALUES
 ('f1', 'B1', 'expense', 't', 's1', 'd1', 1200.50, 1200.50, 'CNY', 'approving', 1, :old, :old, :old),
 ('f2', 'B2', 'expense', 't', 's1', 'd1', 300.00, 300.00, 'CNY', 'paying', 2, :old, :old, :old),
 ('f3', 'B3', 'expense', 't', 's1', 'd1', 10.00, 10.00, 'CNY', 'approving', NULL, :old, :old, :old),
 ('f6', 'B6', 'expense', 't', 's1', 'd1', 60.00, 60.00, 'CNY', 'approving', NULL, :old, :old, :inside),
 ('f7', 'B7', 'loan', 't', 's1', 'd1', 70.00, 70.00, 'CNY', 'paid', NULL, :old, :old, :inside);
INSERT INTO ekb.flow_detail VALUES
 ('l1', 'f1', 1, '差旅费', 1000.50, NULL, '26442000000000000001', '2026-03-01', NULL),
 ('l2', 'f1', 2, '餐费', 200.00, '044001900111', '00000001', '2026-03-01', NULL);
INSERT INTO ekb.payment VALUES
 ('p2', 'f2', 300.00, 'PROCESSING', '张伟', '6222021234567891234', :old, NULL, :inside);
"""


def _load(databases: Databases) -> None:
    oa, expense = databases.engine("oa"), databases.engine("expense")
    create_reference_schema(oa, "oa", recreate=True)
    create_reference_schema(expense, "expense", recreate=True)
    old = datetime(2026, 3, 1, 9, 0, tzinfo=TZ)
    inside = datetime(2026, 3, 31, 12, 30, tzinfo=TZ)
    with oa.begin() as conn:
        for statement in OA_ROWS.split(";\n"):
            if statement.strip():
                conn.execute(
                    sa.text(statement),
                    {"in_d": INSIDE[0], "in_t": INSIDE[1], "old_d": OLD[0], "old_t": OLD[1]},
                )
    with expense.begin() as conn:
        for statement in EXPENSE_ROWS.split(";\n"):
            if statement.strip():
                conn.execute(sa.text(statement), {"old": old, "inside": inside})


def test_full_extraction_reads_the_reference_schemas_exactly(databases: Databases) -> None:
    _load(databases)
    sides = extract_sides(databases.engine("oa"), databases.engine("expense"), SETTINGS)
    oa = sides.oa_claims.set_index("request_id")
    assert sorted(oa.index) == [1, 2, 3, 4, 5]  # workflow 99 is not the expense workflow
    assert oa.loc[1, "amount_cents"] == 120050
    assert (oa.loc[1, "lines_total_cents"], oa.loc[1, "line_count"]) == (120050, 2)
    assert oa.loc[1, "state"] == "approved"
    assert oa.loc[1, "approved_at"] == pd.Timestamp("2026-03-02 10:00:00", tz=TZ)
    assert oa.loc[1, "changed_at"] == pd.Timestamp("2026-03-31 12:30:00", tz=TZ)
    assert oa.loc[2, "state"] == "paid"
    assert str(oa.loc[2, "fkrq"]) == "2026-03-05"
    assert oa.loc[4, "state"] == "rejected"  # the comment after the send-back is not decisive
    assert oa.loc[1, "employee_code"] == "E1"
    assert set(sides.oa_lines["claim_ref"]) == {"1"}  # no lines of other workflows
    expense = sides.expense_claims.set_index("claim_code")
    assert sorted(expense.index) == ["B1", "B2", "B3", "B6"]  # the loan is not synced
    assert expense.loc["B2", "state"] == "paying"
    assert expense.loc["B1", "state"] == "submitted"
    assert expense.loc["B6", "changed_at"] == pd.Timestamp("2026-03-31 12:30:00", tz=TZ)
    payments = sides.expense_payments
    assert payments["payee_account_masked"].tolist() == ["6222 **** **** 1234"]
    assert sorted(sides.expense_lines["invoice_number"]) == ["00000001", "26442000000000000001"]
    assert sorted(sides.oa_employees["employee_code"]) == ["E1"]
    assert "certificatenum" not in sides.oa_employees.columns
    assert sorted(sides.expense_departments["department_code"]) == ["D1"]


def test_window_takes_changed_rows_and_their_counterparts_by_key(databases: Databases) -> None:
    _load(databases)
    raw = extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS, window=WINDOW)
    # OA 1 and 3 changed in the window; their claims B1 (by oa_request_id) and B3 (by bxdh) come along.
    # B6 changed in the window; B2's payment changed in the window, so B2 and OA request 2 come along.
    assert sorted(raw.oa_claims["requestid"]) == [1, 2, 3]
    assert sorted(raw.expense_claims["code"]) == ["B1", "B2", "B3", "B6"]
    assert sorted(raw.oa_lines["requestid"].unique()) == [1]
    assert sorted(raw.expense_lines["code"].unique()) == ["B1"]
    assert raw.expense_payments["code"].tolist() == ["B2"]
    touched = raw.oa_claims.set_index("requestid")["scope_bucket"]
    assert touched[1] == 0
    assert pd.isna(touched[2])  # a counterpart, not changed in the window
    sides = extract_sides(databases.engine("oa"), databases.engine("expense"), SETTINGS, window=WINDOW)
    result = reconcile(sides, as_of=WINDOW.end, settings=SETTINGS)
    assert result.matched == 3  # 1↔B1, 2↔B2, 3↔B3 (fallback)
    assert ("missing_in_oa", "exp:B6") in set(
        zip(result.exceptions["code"], result.exceptions["business_key"], strict=True)
    )


def test_a_key_with_a_line_break_and_sql_in_it_is_only_a_value(databases: Databases) -> None:
    # Keys found in one system are bound into the queries on the other: a value is a value even
    # when it holds a line break (which would end an SQL comment) and SQL after it.
    _load(databases)
    hostile = "B3\n) OR TRUE --'); DROP TABLE ekb.flow; --"
    with databases.engine("oa").begin() as conn:
        conn.execute(sa.text("UPDATE ecology.formtable_main_38 SET bxdh = :b WHERE requestid = 3"), {"b": hostile})
    raw = extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS, window=WINDOW)
    assert raw.oa_claims.set_index("requestid").loc[3, "bxdh"] == hostile
    assert sorted(raw.expense_claims["code"]) == ["B1", "B2", "B6"]  # B3 is no longer named by OA 3
    with databases.engine("expense").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM ekb.flow")).scalar() == 5


def test_window_overlap_reaches_back(databases: Databases) -> None:
    _load(databases)
    late = Window(datetime(2026, 3, 31, 12, 33, tzinfo=TZ), datetime(2026, 3, 31, 13, 0, tzinfo=TZ))
    raw = extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS, window=late)
    assert sorted(raw.oa_claims["requestid"]) == [1, 2, 3]  # 12:30 is inside 12:33 - 5 min overlap
    none = Window(datetime(2026, 3, 31, 12, 36, tzinfo=TZ), datetime(2026, 3, 31, 13, 0, tzinfo=TZ))
    raw = extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS, window=none)
    assert raw.oa_claims.empty
    assert raw.expense_claims.empty


def test_bad_scopes_and_unreachable_tables_are_one_line_errors(databases: Databases) -> None:
    with pytest.raises(ConfigError, match="time zone"):
        Window(datetime(2026, 3, 31), datetime(2026, 4, 1))
    with pytest.raises(ConfigError, match="bucket"):
        extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS, bucket=(3, 3))
    with pytest.raises(ClaimsyncError, match="extracting from the OA database") as info:
        extract_raw(databases.engine("oa"), databases.engine("expense"), SETTINGS)  # no schema created
    assert "\n" not in str(info.value)


@pytest.fixture
def filled(databases: Databases) -> Databases:
    fill(databases.oa_url, databases.expense_url, 20_000)
    return databases


def test_window_query_uses_the_cursor_index(filled: Databases) -> None:
    scope = _scope(SETTINGS, WINDOW, None)
    with filled.engine("oa").connect() as conn:
        query = _render(
            conn,
            "oa/claims",
            SETTINGS,
            scope=scope.seed(_OA_CLAIM_SCOPE),
            log_scope="TRUE",
            scope_bucket=scope.scope_bucket(_OA_CLAIM_SCOPE),
        )
        with raw_cursor(conn) as cursor:
            cursor.execute("EXPLAIN " + query, {**scope.params, "workflow_id": 38})
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "workflow_requestbase_lastoperate_idx" in plan, plan
    assert "Index Scan" in plan or "Bitmap Index Scan" in plan, plan


def test_buckets_partition_the_rows_and_merge_to_the_single_run(filled: Databases) -> None:
    oa, expense = filled.engine("oa"), filled.engine("expense")
    as_of = datetime(2026, 1, 3, tzinfo=TZ)
    single = reconcile(extract_sides(oa, expense, SETTINGS), as_of=as_of, settings=SETTINGS)
    parts = [extract_sides(oa, expense, SETTINGS, bucket=(i, 3)) for i in range(3)]
    seeded = [s.scope.oa_buckets.dropna() for s in parts if s.scope is not None]
    assert sum(len(s) for s in seeded) == single.oa_claims  # every request seeds exactly one bucket
    merged = merge_results([reconcile(p, as_of=as_of, settings=SETTINGS) for p in parts])
    assert len(single.exceptions) > 100
    pd.testing.assert_frame_equal(merged.exceptions, single.exceptions)
    assert merged.to_dict() == single.to_dict()


def test_windowed_buckets_merge_to_the_windowed_single_run(filled: Databases) -> None:
    oa, expense = filled.engine("oa"), filled.engine("expense")
    window = WINDOW_OF_FILLED
    as_of = window.end + timedelta(minutes=10)
    single = reconcile(extract_sides(oa, expense, SETTINGS, window=window), as_of=as_of, settings=SETTINGS)
    merged = merge_results(
        [
            reconcile(
                extract_sides(oa, expense, SETTINGS, window=window, bucket=(i, 4)), as_of=as_of, settings=SETTINGS
            )
            for i in range(4)
        ]
    )
    assert single.oa_claims > 500
    pd.testing.assert_frame_equal(merged.exceptions, single.exceptions)
    assert merged.to_dict() == single.to_dict()


def test_copy_is_parsed_while_it_streams_and_its_errors_stay_one_line(databases: Databases) -> None:
    """_stream_copy: quoted line breaks and commas, null vs empty text, no rows, a COPY that fails
    half-way (the database's error, not a parse error), and a value Arrow cannot convert (its
    error; the pipe is closed, the connection stays usable)."""
    import pyarrow as pa
    import pyarrow.lib

    from claimsync.extract import _stream_copy

    def copy(query: str) -> str:
        return f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)"

    with databases.engine("state").connect() as conn, raw_cursor(conn) as cursor:
        rows = 300_000  # several MiB: more than the pipe and Arrow's first block
        table = _stream_copy(
            cursor,
            copy(
                "SELECT g AS n, g::text || E'\\n,\"x' AS t, NULL::text AS absent, '' AS blank, g % 2 = 0 AS even"
                f" FROM generate_series(1, {rows}) g"
            ),
            {"n": pa.int64(), "even": pa.bool_()},
        )
        assert table.num_rows == rows
        assert table.column("n").to_pylist()[:2] == [1, 2]
        assert table.column("t")[0].as_py() == '1\n,"x'
        assert table.column("absent").null_count == rows
        assert table.column("blank")[0].as_py() == ""
        assert table.column("even").to_pylist()[:2] == [False, True]

        empty = _stream_copy(cursor, copy("SELECT 1 AS n, 'a' AS t WHERE false"), {"n": pa.int64()})
        assert empty.num_rows == 0
        assert empty.schema.types == [pa.int64(), pa.string()]

        with pytest.raises(psycopg2.errors.DivisionByZero):
            _stream_copy(cursor, copy("SELECT 1 / (g - 200000) AS n FROM generate_series(1, 300000) g"), {})
        cursor.connection.rollback()

        with pytest.raises(pyarrow.lib.ArrowInvalid, match="int64"):
            _stream_copy(cursor, copy("SELECT 'abc' AS n FROM generate_series(1, 300000)"), {"n": pa.int64()})
        cursor.connection.rollback()
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


FRAMES = (
    "oa_claims",
    "oa_lines",
    "oa_employees",
    "oa_departments",
    "expense_claims",
    "expense_lines",
    "expense_payments",
    "expense_employees",
    "expense_departments",
)


def test_canonicalize_frames_takes_over_each_raw_frame_and_equals_canonicalize(filled: Databases) -> None:
    from claimsync.canonical import canonicalize, canonicalize_frames

    raw = extract_raw(filled.engine("oa"), filled.engine("expense"), SETTINGS)
    expected = canonicalize(raw, SETTINGS)
    frames = raw.frames()
    consumed = canonicalize_frames(frames, SETTINGS, bucket=None)
    assert frames == {}  # every raw frame was taken over
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(consumed, name), getattr(expected, name))


@pytest.mark.parametrize(
    ("window", "bucket", "parts"),
    [
        (None, None, ("claims", "org")),
        (WINDOW_OF_FILLED, None, ("claims", "org")),
        (None, (1, 3), ("claims", "org")),
        (WINDOW_OF_FILLED, (2, 4), ("claims", "org")),
        (None, None, ("claims",)),
        (None, None, ("org",)),
    ],
    ids=["full", "window", "bucket", "windowed-bucket", "claims-only", "org-only"],
)
def test_extract_sides_equals_canonicalize_of_extract_raw(
    filled: Databases, window: Window | None, bucket: tuple[int, int] | None, parts: tuple[str, ...]
) -> None:
    """extract_sides canonicalizes each system in its own thread as its records arrive; the
    result is exactly canonicalize(extract_raw(…)) in every scope."""
    from claimsync.canonical import canonicalize

    oa, expense = filled.engine("oa"), filled.engine("expense")
    expected = canonicalize(extract_raw(oa, expense, SETTINGS, window=window, bucket=bucket, parts=parts), SETTINGS)
    sides = extract_sides(oa, expense, SETTINGS, window=window, bucket=bucket, parts=parts)
    assert len(expected.oa_claims) + len(expected.oa_employees) > 0
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(sides, name), getattr(expected, name))
    if bucket is None:
        assert sides.scope is None
        assert expected.scope is None
    else:
        assert sides.scope is not None
        assert expected.scope is not None
        assert sides.scope.bucket == expected.scope.bucket == bucket
        pd.testing.assert_series_equal(sides.scope.oa_buckets, expected.scope.oa_buckets)
        pd.testing.assert_series_equal(sides.scope.expense_buckets, expected.scope.expense_buckets)
