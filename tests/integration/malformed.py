"""Malformed raw records for the quality-gate tests: a catalogue of defects, and how to mix them in.

Each injected record is built from a valid row of the demo's raw frames (claimsync.extract
column names) with a fresh key, then broken one way. A record that breaks a line or a
payment comes with a fresh valid claim of its own, so what must be quarantined is known
exactly: the record and (by cascade) its claim. ``bad=False`` defects are valid rows with
nasty but legitimate text (Chinese, emoji, SQL-looking strings): they must pass.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

# What ends up in quarantine: (source, entity, record key) — or, for a row without a key,
# (source, entity, None) with a marker value to look for in the clean frames.
Expected = tuple[str, str, str | None]

BAD_CHARS = ("\ud800", "\udfff", "\x00", "\x07", "\ufffd", "\x1b", "\x7f")
SQL = ("'); DROP TABLE ekb.flow;--", "1' OR '1'='1", 'Robert"); DELETE FROM ecology.hrmresource;--')
GARBAGE_AMOUNTS = ("12.345", "-12.30", "12,30", "1e3", "壹佰元", "0.001", "--1", "")
BAD_DATES = ("2026-02-30", "2026-13-01", "2025-00-10", "20260301", "2026/03/01")
BAD_TIMES = ("25:61:00", "24:00:01", "12:60:00", "7pm")
FAR_FUTURE = "2099-01-01"
BAD_STAMPS = ("2026-02-30 10:00:00", "2026-01-01 25:00:00")


@dataclass
class Injection:
    """Rows to add per raw frame, and what the gate must do with them."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    quarantined: list[Expected] = field(default_factory=list)
    markers: list[tuple[str, str, Any]] = field(default_factory=list)  # (suite, column, value) of keyless rows
    survivors: list[Expected] = field(default_factory=list)  # valid rows that must pass
    bad_rows: int = 0

    def add(self, frame: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(frame, []).append(row)


@dataclass(frozen=True)
class Defect:
    name: str
    bad: bool
    build: Callable[[Any, int, str, int], Injection]  # (bases, serial, text payload, choice) → injection


class Bases:
    """One valid raw row of each frame, to copy."""

    def __init__(self, raw: Any) -> None:
        self.rows = {
            f.name: getattr(raw, f.name).iloc[0].to_dict()
            for f in fields(raw)
            if f.name.startswith(("oa_", "expense_"))
        }

    def row(self, frame: str, **changes: Any) -> dict[str, Any]:
        row = dict(self.rows[frame])
        row.update(changes)
        return row


def _spoil(text: str, choice: int) -> str:
    """``text`` with one invalid character inserted."""
    bad = BAD_CHARS[choice % len(BAD_CHARS)]
    at = choice % (len(text) + 1)
    return text[:at] + bad + text[at:]


def _long(payload: str, minimum: int) -> str:
    filler = (payload or "长") * (minimum // max(len(payload), 1) + 2)
    return filler[: minimum + 1 + len(payload) % 50]


# --- fresh valid records -----------------------------------------------------------------------


def oa_claim(b: Bases, n: int, inj: Injection, *, line: bool = True, **changes: Any) -> int:
    rid = 9_000_000 + n
    row = b.row("oa_claims", requestid=rid, requestmark=f"INJ-{n}", bxdh=None, bxje="100.00", scope_bucket=0)
    row.update(changes)
    inj.add("oa_claims", row)
    if line:
        inj.add("oa_lines", b.row("oa_lines", requestid=rid, id=90_000_000 + n, je="100.00"))
    return rid


def expense_claim(b: Bases, n: int, inj: Injection, *, line: bool = True, **changes: Any) -> str:
    code = f"BINJ{n}"
    row = b.row(
        "expense_claims", id=f"INJF{n}", code=code, oa_request_id=None, sum_amount="100.00", pay_money="100.00",
        scope_bucket=0,
    )  # fmt: skip
    row.update(changes)
    inj.add("expense_claims", row)
    if line:
        inj.add("expense_lines", b.row("expense_lines", code=code, seq=1, amount="100.00"))
    return code


# --- the catalogue ------------------------------------------------------------------------------


def _oa_claim_defect(name: str, column: str, values: Callable[[str, int], Any]) -> Defect:
    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        rid = oa_claim(b, n, inj, **{column: values(payload, choice)})
        inj.quarantined.append(("oa", "claims", f"oa:{rid}"))
        inj.bad_rows = 1
        return inj

    return Defect(f"oa_claims.{name}", True, build)


def _oa_null_key(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    oa_claim(b, n, inj, line=False, requestid=None, bxje="0.00")
    inj.quarantined.append(("oa", "claims", None))
    inj.markers.append(("oa_claims", "request_mark", f"INJ-{n}"))
    inj.bad_rows = 1
    return inj


def _oa_duplicate(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    rid = oa_claim(b, n, inj, line=False, bxje="0.00")
    inj.add("oa_claims", b.row("oa_claims", requestid=rid, requestmark=f"INJ-{n}-copy", bxdh=None, bxje="0.00"))
    inj.quarantined.append(("oa", "claims", f"oa:{rid}"))
    inj.bad_rows = 2
    return inj


def _oa_line_defect(name: str, changes: Callable[[str, int], dict[str, Any]]) -> Defect:
    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        rid = oa_claim(b, n, inj, line=False)
        line = b.row("oa_lines", requestid=rid, id=90_000_000 + n, je="100.00")
        line.update(changes(payload, choice))
        inj.add("oa_lines", line)
        inj.quarantined += [("oa", "lines", f"oa:{rid}#1"), ("oa", "claims", f"oa:{rid}")]
        inj.bad_rows = 1
        return inj

    return Defect(f"oa_lines.{name}", True, build)


def _exp_claim_defect(name: str, changes: Callable[[str, int], dict[str, Any]], key: str = "code") -> Defect:
    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        made = changes(payload, choice)
        code = expense_claim(b, n, inj, line="code" not in made, **made)
        record = f"exp:{code}" if "code" not in made else f"flow:INJF{n}"
        inj.quarantined.append(("expense", "claims", record))
        inj.bad_rows = 1
        return inj

    return Defect(f"expense_claims.{name}", True, build)


def _exp_duplicate_code(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    code = expense_claim(b, n, inj, line=False, sum_amount="0.00", pay_money="0.00")
    inj.add("expense_claims", b.row("expense_claims", id=f"INJF{n}b", code=code, oa_request_id=None,
                                    sum_amount="0.00", pay_money="0.00"))  # fmt: skip
    inj.quarantined.append(("expense", "claims", f"exp:{code}"))
    inj.bad_rows = 2
    return inj


def _exp_line_defect(name: str, changes: Callable[[str, int], dict[str, Any]]) -> Defect:
    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        code = expense_claim(b, n, inj, line=False)
        line = b.row("expense_lines", code=code, seq=1, amount="100.00")
        line.update(changes(payload, choice))
        inj.add("expense_lines", line)
        inj.quarantined += [("expense", "lines", f"exp:{code}#1"), ("expense", "claims", f"exp:{code}")]
        inj.bad_rows = 1
        return inj

    return Defect(f"expense_lines.{name}", True, build)


def _exp_duplicate_line(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    code = expense_claim(b, n, inj, line=False)
    for _ in range(2):
        inj.add("expense_lines", b.row("expense_lines", code=code, seq=1, amount="50.00"))
    inj.quarantined += [("expense", "lines", f"exp:{code}#1"), ("expense", "claims", f"exp:{code}")]
    inj.bad_rows = 2
    return inj


def _payment_defect(name: str, changes: Callable[[str, int], dict[str, Any]]) -> Defect:
    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        code = expense_claim(b, n, inj)
        made = changes(payload, choice)
        payment = b.row("expense_payments", id=f"INJP{n}", code=code, amount="100.00")
        payment.update(made)
        inj.add("expense_payments", payment)
        key = f"pay:INJP{n}" if made.get("id", "") is not None else None
        inj.quarantined += [("expense", "payments", key), ("expense", "claims", f"exp:{code}")]
        if key is None:
            inj.markers.append(("expense_payments", "claim_code", code))
        inj.bad_rows = 1
        return inj

    return Defect(f"expense_payments.{name}", True, build)


def _org_defect(frame: str, name: str, changes: Callable[[str, int], dict[str, Any]]) -> Defect:
    source, entity = frame.split("_", 1)
    key_column = {"oa_employees": "workcode", "expense_employees": "code",
                  "oa_departments": "departmentmark", "expense_departments": "code"}[frame]  # fmt: skip
    prefix = "emp:" if entity == "employees" else "dep:"
    marker_column = {
        "oa_employees": ("lastname", "name"),
        "expense_employees": ("name", "name"),
        "oa_departments": ("departmentname", "name"),
        "expense_departments": ("name", "name"),
    }[frame]

    def build(b: Bases, n: int, payload: str, choice: int) -> Injection:
        inj = Injection()
        code = f"INJ{frame[:2].upper()}{entity[0].upper()}{n}"
        made = changes(payload, choice)
        row = b.row(frame, **{key_column: code, marker_column[0]: f"INJ-{n}"})
        row.update(made)
        inj.add(frame, row)
        inj.bad_rows = 1
        if made.get(key_column, "") is None:
            inj.quarantined.append((source, entity, None))
            inj.markers.append((frame, marker_column[1], f"INJ-{n}"))
        elif made.get(key_column) == "DUP":
            row[key_column] = code
            inj.add(frame, dict(row))
            inj.quarantined.append((source, entity, f"{prefix}{code}"))
            inj.bad_rows = 2
        else:
            inj.quarantined.append((source, entity, f"{prefix}{code}"))
        return inj

    return Defect(f"{frame}.{name}", True, build)


# Valid but nasty: must pass untouched.
def _nasty_oa_claim(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    text = (SQL[choice % len(SQL)] if choice % 2 else payload)[:80]
    rid = oa_claim(b, n, inj, requestmark=f"INJ-{n} {text}", pzh=f"凭证-😀-{choice % 1000}")
    inj.survivors.append(("oa", "claims", f"oa:{rid}"))
    return inj


def _nasty_employee(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    code = f"INJOKE{n}"
    inj.add("oa_employees", b.row("oa_employees", workcode=code, lastname=(payload or "张伟") [:150],
                                  email=f"{SQL[choice % len(SQL)][:30]}@例子.中国"))  # fmt: skip
    inj.survivors.append(("oa", "employees", f"emp:{code}"))
    return inj


def _nasty_expense_claim(b: Bases, n: int, payload: str, choice: int) -> Injection:
    inj = Injection()
    code = expense_claim(b, n, inj, voucher_no=("V-" + payload)[:50], submitter_code=SQL[choice % len(SQL)][:60])
    inj.survivors.append(("expense", "claims", f"exp:{code}"))
    return inj


def _ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


DEFECTS: tuple[Defect, ...] = (
    Defect("oa_claims.null_key", True, _oa_null_key),
    Defect("oa_claims.duplicate_key", True, _oa_duplicate),
    _oa_claim_defect("amount", "bxje", lambda p, c: GARBAGE_AMOUNTS[c % len(GARBAGE_AMOUNTS)] or "-1.00"),
    _oa_claim_defect("currency", "bz", lambda p, c: ("XYZ", "人民币", "RMB", "C N")[c % 4]),
    _oa_claim_defect("state", "currentnodetype", lambda p, c: ("9", "x", "")[c % 3] or None),
    _oa_claim_defect("createdate", "createdate", lambda p, c: BAD_DATES[c % len(BAD_DATES)]),
    _oa_claim_defect("createtime", "createtime", lambda p, c: BAD_TIMES[c % len(BAD_TIMES)]),
    _oa_claim_defect("lastoperatedate", "lastoperatedate", lambda p, c: (*BAD_DATES, FAR_FUTURE)[c % 6]),
    _oa_claim_defect("future", "createdate", lambda p, c: FAR_FUTURE),
    _oa_claim_defect("fkrq", "fkrq", lambda p, c: BAD_DATES[c % len(BAD_DATES)]),
    _oa_claim_defect("fkzt", "fkzt", lambda p, c: ("付了", "PAID", "支付")[c % 3]),
    _oa_claim_defect("requestmark_encoding", "requestmark", lambda p, c: _spoil(f"FYBX-{p[:20]}", c)),
    _oa_claim_defect("requestmark_long", "requestmark", lambda p, c: _long(p, 100)),
    _oa_claim_defect("pzh_encoding", "pzh", lambda p, c: _spoil("PZ-2026-" + p[:10], c)),
    _oa_claim_defect("pzh_long", "pzh", lambda p, c: _long(p, 50)),
    _oa_claim_defect("bxdh_long", "bxdh", lambda p, c: "B" + "9" * (40 + c % 20)),
    _oa_claim_defect("sqr_status", "sqr_status", lambda p, c: 8 + c % 5),
    _oa_line_defect("fylx", lambda p, c: {"fylx": ("买游艇", SQL[0], "", "差旅")[c % 4]}),
    _oa_line_defect("fylx_null", lambda p, c: {"fylx": None}),
    _oa_line_defect("fylx_encoding", lambda p, c: {"fylx": _spoil("差旅费", c)}),
    _oa_line_defect("je", lambda p, c: {"je": GARBAGE_AMOUNTS[c % len(GARBAGE_AMOUNTS)] or "-0.01"}),
    _oa_line_defect(
        "invoice",
        lambda p, c: [
            {"fpdm": None, "fphm": "12345678"},
            {"fpdm": "3100201130", "fphm": "26312000000012345678"},
            {"fpdm": "31002011", "fphm": "12345678"},
            {"fpdm": "3100201130", "fphm": "1234567X"},
            {"fpdm": "3100201130", "fphm": None},
            {"fpdm": None, "fphm": "123456789012345678901"},
        ][c % 6],
    ),
    _oa_line_defect("kprq", lambda p, c: {"kprq": (*BAD_DATES, FAR_FUTURE)[c % 6]}),
    Defect("expense_claims.duplicate_code", True, _exp_duplicate_code),
    _exp_claim_defect("null_code", lambda p, c: {"code": None, "sum_amount": "0.00", "pay_money": "0.00"}),
    _exp_claim_defect("state", lambda p, c: {"state": ("bogus", "PAID", "")[c % 3]}),
    _exp_claim_defect("sum_amount", lambda p, c: {"sum_amount": GARBAGE_AMOUNTS[c % len(GARBAGE_AMOUNTS)] or "-5.00"}),
    _exp_claim_defect("pay_money", lambda p, c: {"pay_money": ("1.999", "-0.50", "NaN")[c % 3]}),
    _exp_claim_defect("currency", lambda p, c: {"currency": ("XYZ", "元", "US$")[c % 3]}),
    _exp_claim_defect("create_time", lambda p, c: {"create_time": pd.NaT if c % 2 else _ts("2099-06-01")}),
    _exp_claim_defect("update_time", lambda p, c: {"update_time": _ts("2099-06-01")}),
    _exp_claim_defect("approve_time", lambda p, c: {"approve_time": _ts("2098-01-01")}),
    _exp_claim_defect("voucher_no", lambda p, c: {"voucher_no": _long(p, 50) if c % 2 else _spoil("V-1", c)}),
    _exp_claim_defect("oa_request_id", lambda p, c: {"oa_request_id": -(c % 1000)}),
    _exp_claim_defect("submitter_encoding", lambda p, c: {"submitter_code": _spoil("E000001", c)}),
    _exp_line_defect("fee_type", lambda p, c: {"fee_type": ("游艇", None, SQL[1])[c % 3]}),
    _exp_line_defect("amount", lambda p, c: {"amount": GARBAGE_AMOUNTS[c % len(GARBAGE_AMOUNTS)] or "-3.00"}),
    _exp_line_defect("invoice", lambda p, c: {"invoice_code": "12345", "invoice_number": "x" * (1 + c % 19)}),
    _exp_line_defect("invoice_date", lambda p, c: {"invoice_date": (*BAD_DATES, FAR_FUTURE)[c % 6]}),
    Defect("expense_lines.duplicate", True, _exp_duplicate_line),
    _payment_defect("status", lambda p, c: {"status": ("DONE", "success", None)[c % 3]}),
    _payment_defect("amount", lambda p, c: {"amount": ("-100.00", "100.001")[c % 2]}),
    _payment_defect("payee_name", lambda p, c: {"payee_name": None if c % 2 else _spoil("张三", c)}),
    _payment_defect("account", lambda p, c: {"payee_account_masked": "6222021234567891234"}),
    _payment_defect("null_id", lambda p, c: {"id": None}),
    _payment_defect("create_time", lambda p, c: {"create_time": _ts("2099-01-01") if c % 2 else pd.NaT}),
    _org_defect("oa_employees", "null_key", lambda p, c: {"workcode": None}),
    _org_defect("oa_employees", "duplicate", lambda p, c: {"workcode": "DUP"}),
    _org_defect("oa_employees", "name", lambda p, c: {"lastname": (None, _long(p, 200), _spoil("王芳", c))[c % 3]}),
    _org_defect("oa_employees", "status", lambda p, c: {"status": (9, None)[c % 2]}),
    _org_defect("oa_employees", "lastmoddate", lambda p, c: {"lastmoddate": (*BAD_DATES, FAR_FUTURE)[c % 6]}),
    _org_defect("oa_employees", "email", lambda p, c: {"email": _long(p, 200) if c % 2 else _spoil("a@b.cn", c)}),
    _org_defect("expense_employees", "null_key", lambda p, c: {"code": None}),
    _org_defect("expense_employees", "duplicate", lambda p, c: {"code": "DUP"}),
    _org_defect("expense_employees", "name", lambda p, c: {"name": (None, _spoil("李娜", c))[c % 2]}),
    _org_defect("expense_employees", "active", lambda p, c: {"active": None}),
    _org_defect("expense_employees", "update_time", lambda p, c: {"update_time": _ts("2099-01-01")}),
    _org_defect("oa_departments", "null_key", lambda p, c: {"departmentmark": None}),
    _org_defect("oa_departments", "duplicate", lambda p, c: {"departmentmark": "DUP"}),
    _org_defect("oa_departments", "name", lambda p, c: {"departmentname": (None, _long(p, 200))[c % 2]}),
    _org_defect("oa_departments", "modified", lambda p, c: {"modified": BAD_STAMPS[c % 2]}),
    _org_defect("expense_departments", "null_key", lambda p, c: {"code": None}),
    _org_defect("expense_departments", "name", lambda p, c: {"name": _spoil("财务部", c)}),
    _org_defect("expense_departments", "active", lambda p, c: {"active": None}),
    Defect("oa_claims.nasty_but_valid", False, _nasty_oa_claim),
    Defect("oa_employees.nasty_but_valid", False, _nasty_employee),
    Defect("expense_claims.nasty_but_valid", False, _nasty_expense_claim),
)  # fmt: skip


def mix(raw: Any, injections: Sequence[Injection]) -> Any:
    """``raw`` (claimsync.extract.RawSides) with the injected rows appended (text columns as Python objects)."""
    from dataclasses import replace

    changes: dict[str, pd.DataFrame] = {}
    for name in {frame for inj in injections for frame in inj.rows}:
        base: pd.DataFrame = getattr(raw, name)
        records = list(itertools.chain.from_iterable(inj.rows.get(name, []) for inj in injections))
        extra = pd.DataFrame(records, dtype=object)  # object: pandas would make lone surrogates fail as text
        extra = extra.reindex(columns=base.columns)
        text = [c for c in base.columns if isinstance(base[c].dtype, pd.StringDtype)]
        base = base.astype(dict.fromkeys(text, object))
        for column in base.columns:
            if column in text:
                extra[column] = extra[column].astype(object).where(extra[column].notna(), None)
            else:
                extra[column] = extra[column].astype(base[column].dtype)
        changes[name] = pd.concat([base, extra], ignore_index=True)
    return replace(raw, **changes)


def expected(injections: Sequence[Injection]) -> Mapping[str, Any]:
    return {
        "quarantined": [e for inj in injections for e in inj.quarantined],
        "markers": [m for inj in injections for m in inj.markers],
        "survivors": [s for inj in injections for s in inj.survivors],
        "bad_rows": sum(inj.bad_rows for inj in injections),
    }
