"""What each ``claimsync`` subcommand does, given parsed arguments and Settings.

Each returns the process exit code; user-caused errors are raised as ClaimsyncError
subclasses and turned into one line by :func:`claimsync.cli.main`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from claimsync.config import Settings, parse_time
from claimsync.db import check_reachable, create_engine, safe_url
from claimsync.errors import ClaimsyncError, ConfigError
from claimsync.migrations import migrate
from claimsync.pgserver import PgServer, obtain_server, start_embedded, stop_embedded
from claimsync.resources import project_dir

if TYPE_CHECKING:
    from claimsync.demo import AnswerKey

DEMO_DATABASES = {"oa": "claimsync_demo_oa", "expense": "claimsync_demo_expense", "state": "claimsync_demo_state"}


def local_dir() -> Path:
    """Project-local working folder for the embedded server, demo output and the like."""
    path = project_dir() / ".claimsync"
    path.mkdir(exist_ok=True)
    return path


def db_init(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_urls("state")
    assert settings.state_url is not None
    engine = create_engine(settings.state_url, "state")
    try:
        check_reachable(engine, "state")
        applied = migrate(engine)
    finally:
        engine.dispose()
    if applied:
        for migration in applied:
            print(f"applied state migration {migration.version:03d}_{migration.name}")
    else:
        print("state schema is up to date")
    return 0


def db_roles(args: argparse.Namespace, settings: Settings) -> int:
    from claimsync.roles import DEFAULT_ROLES, apply_grants, render_grants

    default_reader, default_writer = DEFAULT_ROLES[args.system]
    script = render_grants(args.system, settings, args.reader or default_reader, args.writer or default_writer)
    if not args.apply:
        print(script)
        return 0
    settings.require_urls(args.system)
    url = settings.oa_url if args.system == "oa" else settings.expense_url
    assert url is not None
    engine = create_engine(url, args.system)
    try:
        check_reachable(engine, args.system)
        apply_grants(engine, script)
    finally:
        engine.dispose()
    print(f"granted least privileges on the {args.system} database")
    return 0


def pg(args: argparse.Namespace, settings: Settings) -> int:
    data_dir = local_dir() / "pg"
    if args.action == "start":
        server = start_embedded(data_dir)
        print(f"embedded PostgreSQL running: {safe_url(server.admin_url)}")
        for system, name in DEMO_DATABASES.items():
            print(f"  {system:8s} {safe_url(server.url(name))}")
    elif args.action == "stop":
        stop_embedded(data_dir)
        print("embedded PostgreSQL stopped")
    else:
        running = (data_dir / "postmaster.pid").is_file()
        print(f"embedded PostgreSQL in {data_dir}: {'running' if running else 'stopped'}")
    return 0


@dataclass
class DemoTargets:
    """The three databases the demo runs on, and the server it started (if any)."""

    oa_url: str
    expense_url: str
    state_url: str
    server: PgServer | None


def _demo_targets(settings: Settings) -> DemoTargets:
    configured = [settings.oa_url, settings.expense_url, settings.state_url]
    if settings.oa_url and settings.expense_url and settings.state_url:
        return DemoTargets(settings.oa_url, settings.expense_url, settings.state_url, None)
    if any(configured):
        raise ConfigError("set all three of CLAIMSYNC_OA_URL, CLAIMSYNC_EXPENSE_URL, CLAIMSYNC_STATE_URL, or none")
    server = obtain_server(local_dir() / "pg")
    print(f"using {server.description}")
    urls = {system: server.create_database(name) for system, name in DEMO_DATABASES.items()}
    return DemoTargets(urls["oa"], urls["expense"], urls["state"], server)


def demo(args: argparse.Namespace, settings: Settings) -> int:
    from claimsync.demo import generate, write_answer_key
    from claimsync.refschema import EXPENSE_SCHEMA, OA_SCHEMA, create_reference_schema

    if args.scale < 1 and not args.empty:
        raise ConfigError(f"--scale must be at least 1, got {args.scale}")
    as_of = (
        parse_time(args.as_of, settings.tz, "--as-of")
        if args.as_of
        else datetime.now(settings.tz).replace(second=0, microsecond=0)
    )
    targets = _demo_targets(settings)
    engines = {
        "oa": create_engine(targets.oa_url, "OA"),
        "expense": create_engine(targets.expense_url, "expense"),
        "state": create_engine(targets.state_url, "state"),
    }
    try:
        for system, engine in engines.items():
            check_reachable(engine, system)
        if targets.server is None and not args.replace:
            for system, schema in (("oa", OA_SCHEMA), ("expense", EXPENSE_SCHEMA)):
                if _schema_has_rows(engines[system], schema):
                    raise ConfigError(
                        f"the {system} database already holds data in schema {schema}: "
                        "pass --replace to wipe it for the demo, or point CLAIMSYNC_*_URL elsewhere"
                    )
        create_reference_schema(engines["oa"], "oa", recreate=True)
        create_reference_schema(engines["expense"], "expense", recreate=True)
        with engines["state"].begin() as conn:
            conn.execute(sa.text("DROP SCHEMA IF EXISTS claimsync CASCADE"))
        migrate(engines["state"])
        print(f"OA database:      {safe_url(targets.oa_url)}  (schema {OA_SCHEMA})")
        print(f"expense database: {safe_url(targets.expense_url)}  (schema {EXPENSE_SCHEMA})")
        print(f"state database:   {safe_url(targets.state_url)}  (schema claimsync)")
        if args.empty:
            print("created both reference schemas with no rows")
            return 0

        out_dir = args.out or local_dir() / "demo"
        out_dir.mkdir(parents=True, exist_ok=True)
        key = generate(
            engines["oa"], engines["expense"], scale=args.scale, seed=args.seed, as_of=as_of, settings=settings
        )
        key_path = write_answer_key(key, out_dir / "answer_key.json")
        print(f"generated {key.claims} OA requests and their expense claims in {key.seconds:.1f} s (seed {args.seed})")
        print(f"answer key: {key_path}")
        for code, count in key.counts().items():
            print(f"  {code:24s} {count:6d}")
        if not args.no_run:
            _run_demo_dags(targets, as_of, out_dir, key)
        if targets.server is not None and targets.server.data_dir is not None:
            print(
                f"the embedded server keeps its data in {targets.server.data_dir}; "
                "`claimsync pg start` reopens it and prints the URLs"
            )
        return 0
    finally:
        for engine in engines.values():
            engine.dispose()
        if targets.server is not None:
            targets.server.stop()


def reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from claimsync.pipeline import reconcile_command

    return reconcile_command(args, settings)


def sync(args: argparse.Namespace, settings: Settings) -> int:
    from claimsync.sync import sync_command

    return sync_command(args, settings)


def revert(args: argparse.Namespace, settings: Settings) -> int:
    from claimsync.sync import revert_command

    return revert_command(args, settings)


def _run_demo_dags(targets: DemoTargets, as_of: datetime, out_dir: Path, key: AnswerKey) -> None:
    """Run the org sync, the claim sync and the reconciliation once, through Airflow, and say what they found."""
    import csv
    from collections import Counter

    from claimsync.dagrun import run_dags_once

    report_dir = out_dir / "reports"
    runs: list[tuple[str, dict[str, object]]] = [
        ("claimsync_org_sync", {"full": True}),
        ("claimsync_claim_sync", {"full": True}),
        ("claimsync_reconcile", {"as_of": as_of.isoformat(), "full": True}),
    ]
    print("running the DAGs once through Airflow (airflow dags test) …")
    urls = {"oa": targets.oa_url, "expense": targets.expense_url, "state": targets.state_url}
    for result in run_dags_once(runs, logical_date=as_of, urls=urls, report_dir=report_dir):
        print(f"  {result.dag_id:22s} succeeded in {result.seconds:5.1f} s  (log: {result.log_file})")
    reports = sorted(report_dir.glob("*/report.html"), key=lambda p: p.stat().st_mtime)
    if not reports:
        raise ClaimsyncError(f"the reconciliation ran but wrote no report under {report_dir}")
    report = reports[-1]
    with (report.parent / "exceptions.csv").open(encoding="utf-8") as handle:
        found = Counter(row["code"] for row in csv.DictReader(handle))
    print("after one sync, the reconciliation still finds (planted before sync → found after):")
    for code, planted in key.counts().items():
        print(f"  {code:24s} {planted:6d} → {found.get(code, 0):6d}")
    print(f"report: {report}")
    print(f"        {report.parent / 'report.xlsx'}")
    print(f"        {report.parent / 'exceptions.csv'}")


def _schema_has_rows(engine: sa.Engine, schema: str) -> bool:
    with engine.connect() as conn:
        tables = (
            conn.execute(
                sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"), {"s": schema}
            )
            .scalars()
            .all()
        )
        for table in tables:
            quoted = conn.dialect.identifier_preparer.quote_identifier
            if conn.execute(sa.text(f"SELECT EXISTS (SELECT 1 FROM {quoted(schema)}.{quoted(table)})")).scalar():
                return True
    return False
