"""The finance report of a reconciliation run: ``report.html``, ``report.xlsx``, ``exceptions.csv``.

Every output is rendered from the ledger in the state DB for one run id
(:func:`render_run_report`), so the CLI, the DAG and the Airflow UI plugin show the same
thing and an old run can be re-rendered. Personal data is masked (claimsync.masking).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from claimsync.report.csv_out import CSV_COLUMNS, write_exceptions_csv
from claimsync.report.data import ReportData, RunNotFound, load_report_data
from claimsync.report.html_out import DEFAULT_HTML_LIMIT, render_report_html, write_report_html
from claimsync.report.xlsx_out import write_report_xlsx

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_HTML_LIMIT",
    "ReportData",
    "ReportFiles",
    "RunNotFound",
    "load_report_data",
    "render_report_html",
    "render_run_report",
]

HTML_NAME = "report.html"
XLSX_NAME = "report.xlsx"
CSV_NAME = "exceptions.csv"


@dataclass(frozen=True)
class ReportFiles:
    directory: Path
    html: Path
    xlsx: Path
    csv: Path

    def to_dict(self) -> dict[str, str]:
        return {"directory": str(self.directory), "html": str(self.html), "xlsx": str(self.xlsx), "csv": str(self.csv)}


def render_run_report(
    state_engine: Engine,
    run_id: str,
    out_dir: Path,
    *,
    timezone: str = "Asia/Shanghai",
    html_limit: int = DEFAULT_HTML_LIMIT,
) -> ReportFiles:
    """Write the three report files of ``run_id`` into ``out_dir`` (created if needed).

    Each file is written under a temporary name and renamed, so a reader never sees a
    half-written report and a rerun simply replaces the files.
    """
    data = load_report_data(state_engine, run_id, timezone=timezone)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(out_dir, out_dir / HTML_NAME, out_dir / XLSX_NAME, out_dir / CSV_NAME)
    _write_atomically(files.csv, lambda path: write_exceptions_csv(data, path))
    _write_atomically(files.xlsx, lambda path: write_report_xlsx(data, path))
    _write_atomically(files.html, lambda path: write_report_html(data, path, limit=html_limit))
    return files


def _write_atomically(target: Path, write: Callable[[Path], Path]) -> None:
    partial = target.with_name(f".{target.name}.partial")
    write(partial)
    partial.replace(target)
