"""Canonicalization: the lifecycle table, exact money, text dates, never an exception on bad values."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from claimsync.canonical import canonicalize, parse_cents, parse_date, parse_local_time
from claimsync.config import Settings
from claimsync.extract import _COLUMNS, _FRAME_QUERIES, RawSides, _empty
from claimsync.model import (
    EXPENSE_CLAIM_COLUMNS,
    LINE_COLUMNS,
    OA_CLAIM_COLUMNS,
    PAYMENT_COLUMNS,
)

TZ = ZoneInfo("Asia/Shanghai")


def table(text: str) -> list[dict[str, str | None]]:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    header = [h.strip() for h in lines[0].split("|")]
    return [{h: (c.strip() or None) for h, c in zip(header, line.split("|"), strict=True)} for line in lines[1:]]


def raw_frame(frame: str, rows: list[dict[str, object]]) -> pd.DataFrame:
    """A raw frame as extraction makes it: every query column, typed, defaults for the rest."""
    empty = _empty(frame)
    columns = _COLUMNS[_FRAME_QUERIES[frame]].split()
    data = pd.DataFrame.from_records(rows, columns=columns)
    return data.astype(empty.dtypes.to_dict())


def raw_sides(**frames: list[dict[str, object]]) -> RawSides:
    return RawSides(**{name: raw_frame(name, frames.get(name, [])) for name in _FRAME_QUERIES})


OA_DEFAULTS: dict[str, object] = {
    "requestmark": "FYBX-1",
    "bxje": "100.00",
    "bz": "CNY",
    "deleted": 0,
    "createdate": "2026-03-01",
    "createtime": "09:00:00",
    "lastoperatedate": "2026-03-02",
    "lastoperatetime": "10:30:00",
    "sqr_workcode": "E1",
    "sqr_status": 1,
}


@pytest.mark.parametrize(
    ("row", "state"),
    [
        ("deleted=1 currentnodetype=3 fkzt=已支付", "voided"),
        ("currentnodetype=3 fkzt=支付中", "paying"),
        ("currentnodetype=3 fkzt=已支付", "paid"),
        ("currentnodetype=3", "approved"),
        ("currentnodetype=3 fkzt=支付失败", "approved"),
        ("currentnodetype=1", "submitted"),
        ("currentnodetype=2", "submitted"),
        ("currentnodetype=0", "draft"),
        ("currentnodetype=0 last_logtype=2", "draft"),
        ("currentnodetype=0 last_logtype=3", "rejected"),
        ("currentnodetype=0 last_logtype=r", "withdrawn"),
        ("currentnodetype=9", None),
    ],
)
def test_oa_lifecycle(row: str, state: str | None) -> None:
    fields = dict(item.split("=") for item in row.split())
    record = {**OA_DEFAULTS, "requestid": 1, **fields}
    record["deleted"] = int(str(record["deleted"]))
    claims = canonicalize(raw_sides(oa_claims=[record]), Settings()).oa_claims
    assert claims["state"].iloc[0] == state if state else pd.isna(claims["state"].iloc[0])


EXPENSE_STATES = """
state     | payment    | canonical
draft     |            | draft
pending   |            | submitted
approving |            | submitted
rejected  |            | rejected
paying    |            | approved
paying    | FAILURE    | approved
paying    | PROCESSING | paying
paying    | SUCCESS    | paying
paid      | SUCCESS    | paid
archived  |            | paid
nullify   |            | voided
bogus     |            |
"""


@pytest.mark.parametrize("row", table(EXPENSE_STATES), ids=lambda r: f"{r['state']}-{r['payment']}")
def test_expense_lifecycle_uses_the_payments(row: dict[str, str | None]) -> None:
    claim = {"id": "f1", "code": "B1", "sum_amount": "10.00", "pay_money": "10.00", "currency": "CNY"}
    claim["state"] = row["state"]
    payments = []
    if row["payment"]:
        payments = [{"id": "p1", "code": "B1", "amount": "10.00", "status": row["payment"]}]
    sides = canonicalize(raw_sides(expense_claims=[claim], expense_payments=payments), Settings())
    state = sides.expense_claims["state"].iloc[0]
    assert (state if pd.notna(state) else None) == row["canonical"]
    assert sides.expense_claims["raw_state"].iloc[0] == row["state"]


MONEY = """
text           | cents
0.29           | 29
0.1            | 10
1              | 100
1.5            | 150
-2.50          | -250
 3.00          | 300
99999999999.99 | 9999999999999
1234567890123456.78 | 123456789012345678
12.345         |
1e3            |
abc            |
NaN            |
.              |
"""


def test_money_is_parsed_to_exact_cents_never_through_float() -> None:
    rows = table(MONEY)
    parsed = parse_cents(pd.Series([r["text"] for r in rows] + [None], dtype="str"))
    assert str(parsed.dtype) == "Int64"
    expected = [int(r["cents"]) if r["cents"] else None for r in rows] + [None]
    assert [None if pd.isna(v) else int(v) for v in parsed] == expected


def test_money_fast_path_for_two_decimal_text() -> None:
    parsed = parse_cents(pd.Series(["0.07", "1200.00", "-0.01", None], dtype="str"))
    assert [None if pd.isna(v) else int(v) for v in parsed] == [7, 120000, -1, None]


def test_unparseable_oa_times_and_dates_become_nat() -> None:
    stamps = parse_local_time(
        pd.Series(["2026-03-31 23:59:59", "2026-02-30 10:00:00", "2026-03-31 25:00:00", "garbage", None]), TZ
    )
    assert stamps.iloc[0] == pd.Timestamp("2026-03-31 23:59:59", tz=TZ)
    assert stamps.iloc[1:].isna().all()
    assert str(stamps.dt.tz) == "Asia/Shanghai"
    dates = parse_date(pd.Series(["2026-03-31", "2026-13-01", "", None], dtype="str"))
    assert str(dates.iloc[0]) == "2026-03-31"
    assert dates.iloc[1:].isna().all()


def test_canonical_frames_have_the_model_columns_and_keep_unparsed_source_text() -> None:
    bad = {**OA_DEFAULTS, "requestid": 2, "currentnodetype": "1", "bxje": "12.345", "lastoperatedate": "2026-02-30"}
    raw = raw_sides(
        oa_claims=[{**OA_DEFAULTS, "requestid": 1, "currentnodetype": "3", "bxdh": " B1 "}, bad],
        oa_lines=[
            {"requestid": 1, "id": 20, "fylx": "餐费", "je": "60.00", "fphm": "1", "kprq": "2026-03-01"},
            {"requestid": 1, "id": 10, "fylx": "差旅费", "je": "40.00", "fpdm": " ", "fphm": "2", "kprq": "bad"},
        ],
        expense_claims=[{"id": "f1", "code": "B1", "oa_request_id": 1, "sum_amount": "100.00", "state": "paid"}],
        expense_lines=[{"code": "B1", "seq": 1, "amount": "100.00", "invoice_date": "2026-03-01"}],
        expense_payments=[{"id": "p1", "code": "B1", "amount": "100.00", "status": "SUCCESS"}],
    )
    sides = canonicalize(raw, Settings())
    oa = sides.oa_claims
    assert list(oa.columns[: len(OA_CLAIM_COLUMNS)]) == list(OA_CLAIM_COLUMNS)
    assert all(c.endswith("_src") for c in oa.columns[len(OA_CLAIM_COLUMNS) :])
    assert list(sides.expense_claims.columns[: len(EXPENSE_CLAIM_COLUMNS)]) == list(EXPENSE_CLAIM_COLUMNS)
    assert list(sides.oa_lines.columns[: len(LINE_COLUMNS)]) == list(LINE_COLUMNS)
    assert list(sides.expense_payments.columns[: len(PAYMENT_COLUMNS)]) == list(PAYMENT_COLUMNS)
    first, second = oa.iloc[0], oa.iloc[1]
    assert first["claim_code"] == "B1"
    assert (first["lines_total_cents"], first["line_count"]) == (10000, 2)
    assert first["changed_at"] == pd.Timestamp("2026-03-02 10:30:00", tz=TZ)
    assert pd.isna(second["amount_cents"])
    assert second["amount_cents_src"] == "12.345"
    assert pd.isna(second["changed_at"])
    assert second["changed_at_src"] == "2026-02-30 10:30:00"
    assert (second["lines_total_cents"], second["line_count"]) == (0, 0)
    lines = sides.oa_lines.set_index("fee_type")
    assert (lines.loc["差旅费", "seq"], lines.loc["餐费", "seq"]) == (1, 2)  # by line id
    assert pd.isna(lines.loc["差旅费", "invoice_code"])  # blank is no code
    assert pd.isna(lines.loc["差旅费", "invoice_date"])
    assert lines.loc["差旅费", "invoice_date_src"] == "bad"
    # text that parsed is not kept twice: its *_src is null, the parsed value says it all
    assert pd.isna(first["amount_cents_src"])
    assert pd.isna(first["changed_at_src"])
    assert pd.isna(lines.loc["餐费", "invoice_date_src"])
    assert pd.isna(lines.loc["餐费", "amount_cents_src"])
    assert sides.expense_claims["amount_cents_src"].isna().all()
    assert sides.expense_claims["state"].iloc[0] == "paid"
    assert sides.scope is None
