"""The ``claimsync`` command (also ``python -m claimsync``).

Exit codes: 0 success (exceptions found are not a failure), 2 bad input or config,
1 a failed run. Errors a user can cause are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from claimsync import __version__
from claimsync.config import Settings
from claimsync.errors import ClaimsyncError

Handler = Callable[[argparse.Namespace, Settings], int]


def _add_url_options(parser: argparse.ArgumentParser, *systems: str) -> None:
    for system in systems:
        parser.add_argument(
            f"--{system}-url",
            metavar="URL",
            help=f"SQLAlchemy URL of the {system} database (default: $CLAIMSYNC_{system.upper()}_URL)",
        )


def build_parser() -> argparse.ArgumentParser:
    from claimsync import commands

    parser = argparse.ArgumentParser(
        prog="claimsync",
        description=(
            "Keep an OA system and an expense-reimbursement system in step, and show finance "
            "where they disagree. Connection URLs come from CLAIMSYNC_OA_URL, "
            "CLAIMSYNC_EXPENSE_URL and CLAIMSYNC_STATE_URL, or the --*-url options."
        ),
        epilog="Times are ISO 8601 (2026-03-31T12:00:00+08:00, or a date); without an offset they mean Asia/Shanghai.",
    )
    parser.add_argument("--version", action="version", version=f"claimsync {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        help="zero-setup tour: PostgreSQL, both reference systems with realistic data, one run, the report",
        description=(
            "Start or reuse PostgreSQL (the configured URLs, else an embedded server under .claimsync/), "
            "create both reference systems filled with realistic, deterministic data with planted "
            "discrepancies, write the answer key, run claimsync once and print where everything is."
        ),
    )
    demo.add_argument("--scale", type=int, default=2000, help="number of OA expense requests (default 2000)")
    demo.add_argument("--seed", type=int, default=20260331, help="random seed; same seed, same data (default 20260331)")
    demo.add_argument("--as-of", metavar="T", help="the demo's 'now' (default: the current minute)")
    demo.add_argument("--empty", action="store_true", help="create both reference schemas with no rows and stop")
    demo.add_argument("--replace", action="store_true", help="wipe existing reference data in configured databases")
    demo.add_argument(
        "--out", type=Path, default=None, help="where to write the answer key and report (default .claimsync/demo)"
    )
    demo.add_argument("--no-run", action="store_true", help="only create the data; do not run sync and reconcile")
    _add_url_options(demo, "oa", "expense", "state")
    demo.set_defaults(handler=commands.demo)

    reconcile = sub.add_parser(
        "reconcile",
        help="full reconciliation of OA and expense; writes report.html, report.xlsx, exceptions.csv",
        description=(
            "Reconcile both systems as of a time, record the exceptions in the state database's ledger "
            "and write the finance report into DIR. Exit code 0 even when exceptions are found."
        ),
    )
    reconcile.add_argument("--as-of", metavar="T", help="reconcile as of this time (default: now)")
    reconcile.add_argument(
        "--out", metavar="DIR", type=Path, default=None, help="report folder (default ./claimsync-report-<date>)"
    )
    reconcile.add_argument(
        "--buckets",
        type=int,
        default=None,
        metavar="N",
        help="reconcile in N hash buckets, less memory each (default $CLAIMSYNC_BUCKETS, else 1)",
    )
    reconcile.add_argument(
        "--force", action="store_true", help="continue past the data-quality gate (bad rows stay quarantined)"
    )
    _add_url_options(reconcile, "oa", "expense", "state")
    reconcile.set_defaults(handler=commands.reconcile)

    sync = sub.add_parser(
        "sync",
        help="write what each system owns to the other: org (departments, staff), claims, or all",
        description=(
            "Plan the writes (before- and after-images stored in the state database), then apply them as "
            "compare-and-set: a value a person changed since it was read is never overwritten but recorded "
            "as a write_conflict. Without --since the window starts at the flow's watermark (a first run "
            "reads everything). Rerunning is safe: what is already in step is not written again."
        ),
    )
    sync.add_argument("flow", choices=["org", "claims", "all"])
    sync.add_argument("--since", metavar="T", help="start of the window of changes to read (default: the watermark)")
    sync.add_argument("--until", metavar="T", help="end of the window (default: now)")
    sync.add_argument("--full", action="store_true", help="read everything, not a window")
    sync.add_argument("--dry-run", action="store_true", help="print and store the plan; write nothing")
    sync.add_argument(
        "--force", action="store_true", help="apply a plan the circuit breaker or the data-quality gate would stop"
    )
    sync.add_argument("--wait", action="store_true", help="wait for another copy of the flow instead of exiting")
    _add_url_options(sync, "oa", "expense", "state")
    sync.set_defaults(handler=commands.sync)

    revert = sub.add_parser(
        "revert",
        help="put a sync run's before-images back where its after-images are still there",
        description=(
            "Undo the writes of sync run RUN_ID with the same compare-and-set: a value is restored only "
            "where it still holds what the run wrote; the rest is listed. A claim the run created is voided."
        ),
    )
    revert.add_argument("run_id", metavar="RUN_ID")
    revert.add_argument("--wait", action="store_true", help="wait for a running copy of the flow instead of exiting")
    _add_url_options(revert, "oa", "expense", "state")
    revert.set_defaults(handler=commands.revert)

    db = sub.add_parser("db", help="manage claimsync's state schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_init = db_sub.add_parser(
        "init",
        help="create or migrate the state schema (idempotent)",
        description=(
            "Apply the numbered migrations in sql/state/ that the state database lacks; a second run changes nothing."
        ),
    )
    _add_url_options(db_init, "state")
    db_init.set_defaults(handler=commands.db_init)
    db_roles = db_sub.add_parser(
        "roles",
        help="print (or apply) least-privilege grants for the OA or expense database",
        description=(
            "Render sql/roles/<system>.sql for the configured schema and table names: a read-only extract role "
            "and a writer that may change only the columns claimsync owns. Prints the SQL for your DBA; "
            "--apply runs it with the system's configured URL (which must own the tables)."
        ),
    )
    db_roles.add_argument("system", choices=["oa", "expense"])
    db_roles.add_argument("--reader", help="extract role name (default claimsync_<system>_reader)")
    db_roles.add_argument("--writer", help="write-back role name (default claimsync_<system>_writer)")
    db_roles.add_argument("--apply", action="store_true", help="run the grants instead of printing them")
    _add_url_options(db_roles, "oa", "expense")
    db_roles.set_defaults(handler=commands.db_roles)

    pg = sub.add_parser(
        "pg",
        help="the embedded PostgreSQL the demo uses when none is configured",
        description="Start, stop or locate the embedded PostgreSQL whose data lives in .claimsync/pg.",
    )
    pg.add_argument("action", choices=["start", "stop", "status"])
    pg.set_defaults(handler=commands.pg)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env().with_urls(
            getattr(args, "oa_url", None), getattr(args, "expense_url", None), getattr(args, "state_url", None)
        )
        handler: Handler = args.handler
        return handler(args, settings)
    except ClaimsyncError as exc:
        print(f"claimsync: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("claimsync: interrupted", file=sys.stderr)
        return 1
