"""Data-quality gate overhead at scale: validate both systems' canonical frames vs reconciling them.

    uv run python -m bench.quality [--claims 1000000] [--bad-share 0.001] [--skip-gx-only]

Builds canonical frames (claimsync.model dtypes, as claimsync.canonical produces them) for N
claims per side with their lines (1-6 each), payments, employees and departments, then in one
process measures:

- the baseline: the reconcile of the same frames (claimsync.reconcile when present, else a
  pandas merge + compare of claims and line totals);
- ``validate_sources`` as shipped (frames above 100k rows screened vectorised, GX confirms the
  flagged rows), on clean data and with a share of bad rows planted;
- GX alone on every row of every frame (``gx_full_rows`` = ∞), the design the screen replaces;
- the one-off ``import great_expectations``.

Wall times, peak RSS; results to bench/results/quality.md. Reports, does not assert.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from bench.common import Report, peak_rss_mib, timed

TZ = "Asia/Shanghai"
AS_OF = datetime(2026, 3, 31, 4, 0, tzinfo=UTC)


def _text(array: pa.Array) -> pd.Series:
    return pd.Series(array.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow", na_value=np.nan)}.get))


def _codes(prefix: str, numbers: np.ndarray, width: int) -> pd.Series:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return _text(pc.binary_join_element_wise(prefix, digits, ""))


def _times(rng: np.random.Generator, n: int, start: str = "2025-06-01") -> pd.Series:
    base = pd.Timestamp(start, tz=TZ)
    offsets = rng.integers(0, 270 * 86400, n).astype("timedelta64[s]").astype("timedelta64[us]")
    return pd.Series(pd.DatetimeIndex(base + pd.to_timedelta(offsets)).as_unit("us"))


def _local_text(times: pd.Series) -> pd.Series:
    return times.dt.strftime("%Y-%m-%d %H:%M:%S").astype("str")


def _dates(times: pd.Series) -> pd.Series:
    days = pa.array(times.dt.tz_localize(None).dt.normalize().astype("datetime64[s]"), from_pandas=True)
    return pd.Series(pd.array(days.cast(pa.date32()), dtype=pd.ArrowDtype(pa.date32())))


def _cents_text(cents: np.ndarray) -> pd.Series:
    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), 2, "0")
    return _text(pc.binary_join_element_wise(whole, frac, "."))


def build_sides(claims: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Both systems' canonical frames for ``claims`` linked claims per side (no planted breaks)."""
    rng = np.random.default_rng(seed)
    n = claims
    ids = np.arange(1, n + 1, dtype=np.int64) + 100_000
    employees = max(n // 50, 10)
    departments = max(employees // 100, 5)
    emp = rng.integers(0, employees, n)
    emp_codes = _codes("E", np.arange(employees), 6)
    dep_codes = _codes("D-", np.arange(departments), 4)
    line_counts = rng.integers(1, 7, n)
    m = int(line_counts.sum())
    line_claim = np.repeat(np.arange(n), line_counts)
    line_seq = np.arange(m) - np.repeat(np.cumsum(line_counts) - line_counts, line_counts) + 1
    line_cents = rng.integers(100, 500_000, m)
    totals = np.bincount(line_claim, weights=line_cents, minlength=n).astype(np.int64)
    created = _times(rng, n)
    changed = created + pd.to_timedelta(rng.integers(0, 30 * 86400, n), unit="s")
    states = np.array(["draft", "submitted", "approved", "paying", "paid"])
    state = _text(pa.array(states[rng.integers(0, 5, n)]))
    claim_codes = _codes("B", ids, 9)
    oa_claims = pd.DataFrame(
        {
            "request_id": pd.array(ids, dtype="Int64"),
            "request_mark": _codes("FYBX-2026-", ids, 7),
            "claim_code": claim_codes,
            "employee_code": emp_codes.iloc[emp].reset_index(drop=True),
            "employee_status": pd.array(rng.integers(0, 4, n), dtype="Int64"),
            "department_code": dep_codes.iloc[emp % departments].reset_index(drop=True),
            "amount_cents": pd.array(totals, dtype="Int64"),
            "currency": _text(pa.array(np.full(n, "CNY"))),
            "state": state,
            "fkzt": _text(pa.nulls(n, pa.string())),
            "fkrq": _dates(changed).where(state.eq("paid").to_numpy()),
            "pzh": _text(pa.nulls(n, pa.string())),
            "approved_at": changed,
            "created_at": created,
            "changed_at": changed,
            "lines_total_cents": pd.array(totals, dtype="Int64"),
            "line_count": line_counts.astype(np.int64),
        }
    )
    oa_claims["amount_cents_src"] = _cents_text(totals)
    oa_claims["fkrq_src"] = oa_claims["fkrq"].astype("str").where(oa_claims["fkrq"].notna())
    oa_claims["approved_at_src"] = _local_text(changed)
    oa_claims["created_at_src"] = _local_text(created)
    oa_claims["changed_at_src"] = _local_text(changed)

    expense_claims = pd.DataFrame(
        {
            "flow_id": _codes("F", ids, 12),
            "claim_code": claim_codes,
            "oa_request_id": pd.array(ids, dtype="Int64"),
            "employee_code": oa_claims["employee_code"],
            "department_code": oa_claims["department_code"],
            "amount_cents": pd.array(totals, dtype="Int64"),
            "pay_cents": pd.array(totals, dtype="Int64"),
            "currency": oa_claims["currency"],
            "state": state,
            "raw_state": _text(
                pa.array(np.array(["draft", "approving", "paying", "paying", "paid"])[rng.integers(0, 5, n)])
            ),
            "approve_time": changed,
            "pay_time": changed.where(state.eq("paid").to_numpy()),
            "voucher_no": _text(pa.nulls(n, pa.string())),
            "created_at": created,
            "changed_at": changed,
            "lines_total_cents": pd.array(totals, dtype="Int64"),
            "line_count": line_counts.astype(np.int64),
        }
    )
    expense_claims["amount_cents_src"] = oa_claims["amount_cents_src"]
    expense_claims["pay_cents_src"] = oa_claims["amount_cents_src"]

    fee_types = np.array(["差旅费", "交通费", "餐费", "住宿费", "办公用品", "通讯费", "招待费"])
    full_e = rng.random(m) < 0.3
    invoice_number = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**8, m)), pa.string()), 8, "0")
    long_number = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**18, m)), pa.string()), 20, "0")
    invoice_date = _dates(created.iloc[line_claim].reset_index(drop=True))

    def lines(refs: pd.Series) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "claim_ref": refs,
                "seq": pd.array(line_seq, dtype="Int64"),
                "fee_type": _text(pa.array(fee_types[rng.integers(0, 7, m)])),
                "amount_cents": pd.array(line_cents, dtype="Int64"),
                "invoice_code": _text(pa.array(np.where(full_e, None, "3100201130"))),
                "invoice_number": _text(pc.if_else(pa.array(full_e), long_number, invoice_number)),
                "invoice_date": invoice_date,
            }
        )
        frame["amount_cents_src"] = _cents_text(line_cents)
        frame["invoice_date_src"] = invoice_date.astype("str")
        return frame

    oa_lines = lines(_text(pc.cast(pa.array(ids[line_claim]), pa.string())))
    oa_lines["seq"] = oa_lines["seq"].astype("int64")
    expense_lines = lines(claim_codes.iloc[line_claim].reset_index(drop=True))

    paid = np.flatnonzero(state.eq("paid").to_numpy() | state.eq("paying").to_numpy())
    payments = pd.DataFrame(
        {
            "payment_id": _codes("P", np.arange(len(paid)), 10),
            "claim_code": claim_codes.iloc[paid].reset_index(drop=True),
            "amount_cents": pd.array(totals[paid], dtype="Int64"),
            "status": _text(pa.array(np.full(len(paid), "SUCCESS"))),
            "payee_name": _text(pa.array(np.full(len(paid), "张伟"))),
            "payee_account_masked": _text(pa.array(np.full(len(paid), "6222 **** **** 1234"))),
            "created_at": changed.iloc[paid].reset_index(drop=True),
            "finished_at": changed.iloc[paid].reset_index(drop=True),
            "changed_at": changed.iloc[paid].reset_index(drop=True),
        }
    )
    payments["amount_cents_src"] = _cents_text(totals[paid])

    emp_changed = _times(rng, employees)

    def staff(oa: bool) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "employee_code": emp_codes,
                "name": _text(pa.array(np.full(employees, "王芳"))),
                "department_code": dep_codes.iloc[np.arange(employees) % departments].reset_index(drop=True),
                "active": pd.array(np.ones(employees, dtype=bool), dtype="boolean"),
                "status": pd.array(np.ones(employees, dtype=np.int64) if oa else [pd.NA] * employees, dtype="Int64"),
                "email": _text(pa.nulls(employees, pa.string())),
                "changed_at": emp_changed,
            }
        )
        if oa:
            frame["changed_at_src"] = _local_text(emp_changed)
        return frame

    dep_changed = _times(rng, departments)

    def depts(oa: bool) -> pd.DataFrame:
        frame = pd.DataFrame(
            {
                "department_code": dep_codes,
                "name": _text(pa.array(np.full(departments, "财务部"))),
                "parent_code": _text(pa.nulls(departments, pa.string())),
                "active": pd.array(np.ones(departments, dtype=bool), dtype="boolean"),
                "changed_at": dep_changed,
            }
        )
        if oa:
            frame["changed_at_src"] = _local_text(dep_changed)
        return frame

    return {
        "oa_claims": oa_claims,
        "oa_lines": oa_lines,
        "oa_employees": staff(True),
        "oa_departments": depts(True),
        "expense_claims": expense_claims,
        "expense_lines": expense_lines,
        "expense_payments": payments,
        "expense_employees": staff(False),
        "expense_departments": depts(False),
    }


def plant_bad_rows(sides: dict[str, pd.DataFrame], share: float, seed: int = 11) -> dict[str, int]:
    """Break ``share`` of the claim and line rows (unknown currency, negative line amount)."""
    rng = np.random.default_rng(seed)
    planted = {}
    for suite, column, value in (
        ("oa_claims", "currency", "XYZ"),
        ("expense_claims", "raw_state", "bogus"),
        ("oa_lines", "amount_cents", -1),
        ("expense_lines", "fee_type", "买游艇"),
    ):
        frame = sides[suite]
        rows = rng.choice(len(frame), int(len(frame) * share), replace=False)
        frame.loc[rows, column] = value
        planted[suite] = len(rows)
    return planted


def pandas_reconcile(sides: dict[str, pd.DataFrame]) -> int:
    """Baseline when claimsync.reconcile is not there: merge the claims, compare, total the lines."""
    oa, exp = sides["oa_claims"], sides["expense_claims"]
    merged = oa.merge(exp, left_on="request_id", right_on="oa_request_id", how="outer", suffixes=("_oa", "_exp"))
    differ = (merged["amount_cents_oa"] != merged["amount_cents_exp"]) | (merged["state_oa"] != merged["state_exp"])
    for suite, key in (("oa_lines", "claim_ref"), ("expense_lines", "claim_ref")):
        sides[suite].groupby(key, sort=False)["amount_cents"].sum()
    return int(differ.fillna(True).sum())


def reconcile_seconds(sides: dict[str, pd.DataFrame]) -> tuple[str, float]:
    from claimsync.config import Settings

    try:
        from claimsync.canonical import Sides
        from claimsync.reconcile import reconcile
    except ImportError:
        with timed() as timer:
            pandas_reconcile(sides)
        return "pandas merge + compare (claimsync.reconcile not present)", timer.seconds
    try:
        with timed() as timer:
            reconcile(Sides(**sides), as_of=AS_OF, settings=Settings())
    except Exception as exc:  # a work-in-progress reconcile must not cost the whole measurement
        with timed() as timer:
            pandas_reconcile(sides)
        return f"pandas merge + compare (claimsync.reconcile failed: {type(exc).__name__})", timer.seconds
    return "claimsync.reconcile", timer.seconds


def gate(sides: dict[str, pd.DataFrame], gx: Any, **kwargs: Any) -> tuple[float, Any]:
    from claimsync.config import Settings
    from claimsync.quality import validate_sources

    with timed() as timer:
        outcome = validate_sources(
            sides, settings=Settings(), as_of=AS_OF, run_id="bench", gx=gx, force=True, full_run=False, **kwargs
        )
    return timer.seconds, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=1_000_000)
    parser.add_argument("--bad-share", type=float, default=0.001)
    parser.add_argument("--skip-gx-only", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved reconcile/validate rounds (best of)")
    args = parser.parse_args()

    report = Report("quality", "Data-quality gate overhead (claimsync.quality)")
    with timed() as import_timer:
        from claimsync.quality_engine import GxValidator

        gx = GxValidator()
    with timed() as build:
        sides = build_sides(args.claims)
    rows = {k: len(v) for k, v in sides.items()}
    report.add(f"{args.claims:,} claims per side; frame rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    report.add(f"(building the frames took {build.seconds:.1f} s; not part of any figure below)")
    report.add("")

    # Interleaved rounds: the machine is shared, so each figure is the best of its rounds and the
    # two were measured side by side, under the same load.
    recon_times: list[float] = []
    gate_times: list[float] = []
    label, clean = "", None
    for _ in range(args.rounds):
        label, seconds = reconcile_seconds(sides)
        recon_times.append(seconds)
        seconds, clean = gate(sides, gx)
        gate_times.append(seconds)
    baseline, validate = min(recon_times), min(gate_times)
    assert clean is not None, "--rounds must be at least 1"
    report.add(
        "Rounds (reconcile / validate, s): "
        + ", ".join(f"{r:.2f} / {v:.2f}" for r, v in zip(recon_times, gate_times, strict=True))
        + f"; per-round ratios: {', '.join(f'{v / r:.0%}' for r, v in zip(recon_times, gate_times, strict=True))}"
    )
    report.add("")

    bad_sides = {k: v.copy() for k, v in sides.items()}
    planted = plant_bad_rows(bad_sides, args.bad_share)
    bad_seconds, bad = gate(bad_sides, gx)
    quarantined = int(bad.quarantine["record_key"].nunique())

    table = [
        ["baseline: " + label, f"{baseline:.2f}", "100%"],
        ["validate_sources, clean data (screen + GX)", f"{validate:.2f}", f"{100 * validate / baseline:.0f}%"],
        [
            f"validate_sources, {args.bad_share:.1%} bad rows planted ({sum(planted.values()):,}; "
            f"{quarantined:,} records quarantined)",
            f"{bad_seconds:.2f}",
            f"{100 * bad_seconds / baseline:.0f}%",
        ],
        ["import great_expectations + ephemeral context (once per task process)", f"{import_timer.seconds:.2f}", ""],
    ]
    gx_only: Any = None
    if not args.skip_gx_only:
        gx_seconds, gx_only = gate(sides, gx, gx_full_rows=10**12)
        table.append(
            [
                "GX alone on every row of every frame (gx_full_rows = ∞)",
                f"{gx_seconds:.2f}",
                f"{100 * gx_seconds / baseline:.0f}%",
            ]
        )
    report.table(["step", "wall s", "vs baseline"], table)
    report.add("")
    report.add("Per suite, clean data (shipped design) and GX alone:")
    report.add("")
    per_suite = []
    gx_by_suite = {s.suite: s for s in gx_only.suites} if gx_only is not None else {}
    for s in clean.suites:
        other = gx_by_suite.get(s.suite)
        per_suite.append(
            [
                s.suite,
                f"{s.rows:,}",
                str(s.evaluated),
                s.engine,
                f"{s.seconds:.2f}",
                f"{other.seconds:.2f}" if other else "—",
                f"{1000 * other.seconds / max(s.evaluated, 1) / max(s.rows / 1e6, 1e-6):.0f}" if other else "—",
            ]
        )
    report.table(
        ["suite", "rows", "expectations", "engine", "shipped s", "GX alone s", "GX ms / expectation / M rows"],
        per_suite,
    )
    report.add("")
    report.add(f"Peak RSS of the process: {peak_rss_mib():,.0f} MiB (the frames themselves, both copies of them, and")
    report.add("GX alone materialising per-expectation results on millions of rows).")
    report.add("")
    report.add("## Reading the figures")
    report.add("")
    report.add(
        "- **GX alone is too slow at this size.** Every expectation costs GX a fixed ≈ 10 ms per suite run plus "
        "≈ 0.1-0.3 s per million rows (last column; the high end under load), "
        "and fingerprinting each batch costs ≈ 0.8 s per million "
        "rows; ~200 expectations over ~9.4 M rows come to several times the reconcile itself."
    )
    report.add(
        "- **Shipped design: the suites stay the only rules, GX stays the judge.** A run of more than "
        "100,000 rows is first *screened*: each expectation of each suite (read from expectations/*.json) is "
        "evaluated vectorised with GX's own semantics — one Arrow pass per column, a single RE2 pass over the "
        "column's data buffer for character-class checks, per-distinct-value judging for repeated values, "
        "an O(n) sorted-key check before hashing for uniqueness. GX then validates exactly the rows the "
        "screen flagged, for the rules that flagged them; only rows GX fails are quarantined (a row the screen "
        "flags and GX clears is counted as a screen false positive). A failed table-level check is confirmed by "
        "GX on the full frame before it can stop a run. A suite using an expectation the screen does not "
        "implement is validated by GX whole. Smaller runs (incremental syncs) are validated by GX alone."
    )
    report.add(
        "- **Equivalence is tested, not assumed**: the suite tests run every table through both paths "
        "(tests/unit/test_expectation_suites.py), and the malformed-records test alternates the paths over "
        "10,000+ generated bad records (tests/integration/test_malformed_records.py)."
    )
    report.add(
        "- Bad rows cost GX time: each screened frame with failures costs one GX run over its flagged rows; "
        "the cascade (claims of bad lines, counterparts in the other system) and the quarantine rows are "
        "built vectorised. The one-off GX import happens once per task process, not per frame."
    )
    report.add(f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `python -m bench.quality --claims {args.claims}`.")
    path = report.write()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
